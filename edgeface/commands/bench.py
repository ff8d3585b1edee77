"""`edgeface bench`: size, cold start, latency, throughput, memory, parity and accuracy per target."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path


HELP = """Benchmark face embedders per export target and device profile.

MODEL|BUNDLE may be: a source model (registry name, .safetensors, foreign .ckpt) — it is exported
(`edgeface export`) to every target available here, or to the target each --profile names, and
each bundle is measured against it; an exported bundle directory; or a plain .onnx / OpenVINO .xml
/ .tflite file (with --card, or CARD.json beside it). Each target is probed in a fresh process with
1 thread and with all threads: file size, cold start (load + first inference), latency p50/p90/p99
at batch 1 with its IQR, throughput at --throughput-batch, peak RSS; then cosine parity to the
source on real aligned faces and verification accuracy through the target's own runtime, a column per
--benchmarks (LFW-dev, CFP-FF, CFP-FP) or on your own --data. An accuracy is reused from the bundle's
export verification only when that verification measured the same pairs of the same images (dataset
identity: pair-list hash + image hashes); the table marks such figures "(reused)".
Writes a table (stdout), and BENCH.json/.csv/.md/.png in --out, with the machine description."""


def _threads(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--threads expects comma-separated integers such as 1,0 (0 = all cores), got {text!r}") from None
    if any(v < 0 for v in values):
        raise ValueError(f"--threads values must be >= 0, got {text!r}")
    return values


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark targets/profiles: size, latency, memory, parity, accuracy", description=HELP)
    p.add_argument("models", nargs="+", metavar="MODEL|BUNDLE", help="source model, bundle directory, or .onnx/.xml/.tflite file")
    p.add_argument("--profile", action="append", default=[], help="device profile: a name (edgeface/configs/profiles/NAME.toml, or your own in ./profiles or $EDGEFACE_PROFILES) or a .toml path; repeatable. Exports/measures what it names and checks its budgets")
    p.add_argument("--targets", help="comma-separated TARGET-PRECISION list for source models (default: every target available here), e.g. onnx-fp32,tflite-int8")
    p.add_argument("--source", help="source model the given bundles/files came from (for cosine parity)")
    p.add_argument("--card", help="model card JSON for plain model files")
    p.add_argument("--out", default="out/bench", help="output folder (default out/bench)")
    p.add_argument("--name", default="bench", help="stem of the output files (default bench)")
    p.add_argument("--threads", default="1,0", help="thread counts to probe, comma-separated, 0 = all usable cores (default 1,0)")
    p.add_argument("--throughput-batch", type=int, default=32, help="batch for the throughput figure (default 32)")
    p.add_argument("--min-time", type=float, default=2.0, help="timed seconds per measurement, at least (default 2)")
    p.add_argument("--max-time", type=float, default=10.0, help="seconds per measurement, at most (default 10)")
    p.add_argument("--min-reps", type=int, default=30, help="timed calls per measurement, at least (default 30)")
    p.add_argument("--no-accuracy", action="store_true", help="skip LFW-dev accuracy (and parity unless a source is known)")
    p.add_argument("--benchmarks", default="lfw-dev", help="comma-separated benchmarks for the accuracy columns, a column each: lfw-dev, cfp-ff, cfp-fp, or 'all' (default lfw-dev)")
    p.add_argument("--data", help="your own pairs dataset for accuracy instead of --benchmarks (folder with pairs.txt/pairs.csv, or with --pairs)")
    p.add_argument("--pairs", help="pairs file for --data (LFW pairs.txt format or CSV with a,b,same[,fold])")
    p.add_argument("--limit-folds", type=int, help="evaluate only the first N folds (faster)")
    p.add_argument("--parity-faces", type=int, default=64, help="aligned faces used for cosine parity (default 64)")
    p.add_argument("--export-args", default="", help="extra arguments for `edgeface export` of source models, one string (e.g. \"--lfw-folds 1\")")
    p.add_argument("--rebuild", action="store_true", help="re-export bundles even if they exist in OUT/bundles")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=run)


def available_targets() -> list[tuple[str, str]]:
    """(format, precision) pairs the target table says this machine can export and run."""
    try:
        from .. import targets
    except ImportError:
        raise ValueError("no target table (edgeface.targets) in this install: pass bundles/model files, or name --profile / --targets") from None
    # A target counts when it can be exported AND run here (a TensorRT engine without a GPU cannot).
    return [(t.format, t.precision) for t in targets.available_targets("export") if t.can_run()]


def _parse_targets(text: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split(","):
        fmt, sep, prec = item.strip().rpartition("-")
        if not sep or not fmt:
            raise ValueError(f"--targets: expected FORMAT-PRECISION such as onnx-fp32, got {item!r}")
        out.append((fmt, prec))
    return out


def export_in_subprocess(source: str, out_dir: Path, fmt: str | None = None, precision: str | None = None, profile: str | None = None, rebuild: bool = False, quiet: bool = False, extra: str = "") -> Path:
    """`edgeface export` in a subprocess (the exporter may import torch and converters; this
    process stays lean), reusing an existing bundle unless asked to rebuild."""
    if (out_dir / "edgeface.json").is_file() and not rebuild:
        return out_dir
    cmd = [sys.executable, "-m", "edgeface", "export", source, "--out", str(out_dir)]
    if profile:
        from ..profiles import load_profile

        cmd += ["--recipe", str(load_profile(profile).recipe.path)]  # exactly the profile's recipe
    else:
        cmd += ["--target", fmt, "--precision", precision]
    cmd += shlex.split(extra)
    env = dict(os.environ)
    checkout = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([checkout] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if not quiet:
        print(f"exporting: {' '.join(cmd[2:])}", file=sys.stderr)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"export failed ({' '.join(cmd[3:])}): {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return out_dir


def _stem(spec: str) -> str:
    p = Path(spec)
    return p.stem if p.suffix else p.name


def _bundle_label(path: Path) -> str:
    import json

    try:
        meta = json.loads((path / "edgeface.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}/edgeface.json: cannot read bundle metadata ({exc})") from None
    return f"{meta.get('format', '?')}-{meta.get('precision', '?')}", meta


def build_targets(args) -> tuple[list, list[dict]]:
    from ..bench.harness import BenchItem, classify
    from ..profiles import load_profile

    profiles = [load_profile(name) for name in args.profile]
    targets, skipped = [], []
    out = Path(args.out)
    for spec in args.models:
        kind = classify(spec)
        if kind == "source":
            wanted = []
            if profiles:
                wanted = [(p.recipe.format, p.recipe.precision, p) for p in profiles]
            else:
                pairs = _parse_targets(args.targets) if args.targets else available_targets()
                wanted = [(f, pr, None) for f, pr in pairs]
            for fmt, prec, prof in wanted:
                label = prof.name if prof else f"{fmt}-{prec}"
                bdir = out / "bundles" / _stem(spec) / label
                try:
                    export_in_subprocess(spec, bdir, fmt, prec, str(prof.path) if prof else None, args.rebuild, args.quiet, args.export_args)
                except RuntimeError as exc:
                    skipped.append({"target": f"{_stem(spec)}:{label}", "path": str(bdir), "error": str(exc)})
                    continue
                targets.append(BenchItem(label=f"{fmt}-{prec}", path=bdir, source=spec, profile=prof))
        elif kind == "bundle":
            label, meta = _bundle_label(Path(spec))
            prof = next((p for p in profiles if (p.recipe.format, p.recipe.precision) == (meta.get("format"), meta.get("precision"))), None)
            targets.append(BenchItem(label=label, path=Path(spec), source=args.source, profile=prof))
        else:
            p = Path(spec)
            fmt = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite"}[p.suffix]
            prof = next((pr for pr in profiles if pr.recipe.format == fmt), None)
            targets.append(BenchItem(label=f"{fmt}:{p.stem}", path=p, card=args.card, source=args.source, profile=prof))
    # Distinct labels: the same target of two models gets the model's name in front.
    seen: dict[str, int] = {}
    for t in targets:
        seen[t.label] = seen.get(t.label, 0) + 1
    for t in targets:
        if seen[t.label] > 1 and t.source:
            t.label = f"{_stem(t.source)}:{t.label}"
    return targets, skipped


def source_embeddings(source: str, faces):
    """The source model's (torch) embeddings of the parity faces: the bench's parity reference."""
    from ..zoo import load_embedder

    return load_embedder(source, device="cpu").embed(faces)


def run(args) -> int:
    from .. import benchmarks
    from ..bench import report
    from ..bench.harness import BenchSettings, run_bench

    if args.pairs and not args.data:
        raise ValueError("--pairs names the pairs file of --data DIR; pass --data too")

    threads = _threads(args.threads)
    targets, skipped = build_targets(args)
    if not targets:
        for s in skipped:
            print(f"{s['target']}: {s['error']}", file=sys.stderr)
        raise ValueError("nothing to benchmark: every export failed or no target is available here")
    settings = BenchSettings(
        threads=threads, throughput_batch=args.throughput_batch, min_time=args.min_time, max_time=args.max_time, min_reps=args.min_reps,
        accuracy=not args.no_accuracy, data=args.data or "", pairs=args.pairs, benchmarks=benchmarks.parse(args.benchmarks), limit_folds=args.limit_folds, parity_faces=args.parity_faces, show_progress=not args.quiet,
    )
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    result = run_bench(targets, settings, Path(args.out) / "work", log=log, embed_source=source_embeddings)
    result["errors"] = skipped + result["errors"]
    files = report.write_all(result, args.out, args.name)
    print(report.table(result))
    print("wrote " + ", ".join(files.values()), file=sys.stderr)
    failed = [r["target"] for r in result["rows"] if r.get("pass") is False]
    if failed:
        print(f"over budget: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or (result["errors"] and not result["rows"]) else 0
