"""`edgeface bench` as a library job: `bench(BenchJob) -> BenchRun`.

The job names what to measure (source models, bundles or plain model files; targets or device
profiles) and how; `bench` exports the source models (each in a subprocess, so this process stays
lean), measures every item in fresh processes (edgeface.bench.harness), writes the report files
and returns them with the result. The CLI handler only maps options to the job and prints.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(kw_only=True)
class BenchJob:
    """What to benchmark and how (the fields are `edgeface bench`'s options, by name)."""

    models: list[str]
    profiles: list[str] = field(default_factory=list)
    targets: str | None = None  # "onnx-fp32,tflite-int8"; default every target available here
    source: str | None = None
    card: str | None = None
    out: str = "out/bench"
    name: str = "bench"
    threads: tuple[int, ...] = (1, 0)
    throughput_batch: int = 32
    min_time: float = 2.0
    max_time: float = 10.0
    min_reps: int = 30
    accuracy: bool = True
    benchmarks: str = "lfw-dev"
    data: str | None = None
    pairs: str | None = None
    limit_folds: int | None = None
    parity_faces: int = 64
    export_args: str = ""
    rebuild: bool = False
    quiet: bool = False


@dataclass
class BenchRun:
    result: dict  # rows, errors, machine (edgeface.bench.harness.run_bench) with the failed exports among the errors
    files: dict[str, str]  # json, csv, md, png

    @property
    def over_budget(self) -> list[str]:
        return [r["target"] for r in self.result["rows"] if r.get("pass") is False]

    @property
    def ok(self) -> bool:
        return not self.over_budget and not (self.result["errors"] and not self.result["rows"])


def available_targets() -> list[tuple[str, str]]:
    """(format, precision) pairs the target table says this machine can export and run."""
    try:
        from ..core import targets
    except ImportError:
        raise ValueError("no target table (edgeface.core.targets) in this install: pass bundles/model files, or name --profile / --targets") from None
    # A target counts when it can be exported AND run here (a TensorRT engine without a GPU cannot).
    return [(t.format, t.precision) for t in targets.available_targets("export") if t.can_run()]


def parse_targets(text: str) -> list[tuple[str, str]]:
    """Parse --targets "onnx-fp32,tflite-int8" into [(format, precision), ...]; raises ValueError for an item
    without FORMAT-PRECISION."""
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
        from ..core.profiles import load_profile

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


def stem(spec: str) -> str:
    """Short label for a model spec: the file stem of a path with a suffix, else its last component (a bundle folder)."""
    p = Path(spec)
    return p.stem if p.suffix else p.name


def bundle_label(path: Path) -> tuple[str, dict]:
    """A bundle's "FORMAT-PRECISION" label and its edgeface.json as a dict (a tuple of the two); raises ValueError
    naming the file when it cannot be read or parsed."""
    import json

    try:
        meta = json.loads((path / "edgeface.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}/edgeface.json: cannot read bundle metadata ({exc})") from None
    return f"{meta.get('format', '?')}-{meta.get('precision', '?')}", meta


def build_items(job: BenchJob) -> tuple[list, list[dict]]:
    """The BenchItems a job measures (source models exported first, one bundle per target or
    profile) and the exports that failed ({target, path, error})."""
    from ..core.profiles import load_profile
    from .harness import BenchItem, classify

    profiles = [load_profile(name) for name in job.profiles]
    emulated = [p.name for p in profiles if p.device.emulated]
    if emulated:
        # The bench measures time on this machine; under emulation the time is the host's translation of ARM
        # code, so no figure would be the board's. An emulated board verifies bundles, it does not time them.
        raise ValueError(f"profile {', '.join(emulated)}: an emulated device (qemu): "
                         "`edgeface bench` measures time, which emulation cannot; verify bundles on it with the device tests "
                         "(make test-arm64, make test-arm64-bundles)")
    items, skipped = [], []
    out = Path(job.out)
    for spec in job.models:
        kind = classify(spec)
        if kind == "source":
            if profiles:
                wanted = [(p.recipe.format, p.recipe.precision, p) for p in profiles]
            else:
                wanted = [(f, pr, None) for f, pr in (parse_targets(job.targets) if job.targets else available_targets())]
            for fmt, prec, prof in wanted:
                label = prof.name if prof else f"{fmt}-{prec}"
                bdir = out / "bundles" / stem(spec) / label
                try:
                    export_in_subprocess(spec, bdir, fmt, prec, str(prof.path) if prof else None, job.rebuild, job.quiet, job.export_args)
                except RuntimeError as exc:
                    skipped.append({"target": f"{stem(spec)}:{label}", "path": str(bdir), "error": str(exc)})
                    continue
                items.append(BenchItem(label=f"{fmt}-{prec}", path=bdir, source=spec, profile=prof))
        elif kind == "bundle":
            label, meta = bundle_label(Path(spec))
            prof = next((p for p in profiles if (p.recipe.format, p.recipe.precision) == (meta.get("format"), meta.get("precision"))), None)
            items.append(BenchItem(label=label, path=Path(spec), source=job.source, profile=prof))
        else:
            p = Path(spec)
            fmt = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite"}[p.suffix]
            prof = next((pr for pr in profiles if pr.recipe.format == fmt), None)
            items.append(BenchItem(label=f"{fmt}:{p.stem}", path=p, card=job.card, source=job.source, profile=prof))
    # Distinct labels: the same target of two models gets the model's name in front.
    seen: dict[str, int] = {}
    for t in items:
        seen[t.label] = seen.get(t.label, 0) + 1
    for t in items:
        if seen[t.label] > 1 and t.source:
            t.label = f"{stem(t.source)}:{t.label}"
    return items, skipped


def bench(job: BenchJob, embed_source=None, log=None) -> BenchRun:
    """Export (source models), measure and report; raises ValueError when nothing can be measured.

    embed_source(source, faces) -> embeddings: the source model's own embeddings, the parity
    reference (the caller supplies it: the bench itself never loads a torch model)."""
    from ..eval import benchmarks
    from . import report
    from .harness import BenchSettings, run_bench

    if job.pairs and not job.data:
        raise ValueError("--pairs names the pairs file of --data DIR; pass --data too")
    items, skipped = build_items(job)
    if not items:
        detail = "; ".join(f"{s['target']}: {s['error']}" for s in skipped)
        raise ValueError("nothing to benchmark: every export failed or no target is available here" + (f" ({detail})" if detail else ""))
    settings = BenchSettings(
        threads=job.threads, throughput_batch=job.throughput_batch, min_time=job.min_time, max_time=job.max_time, min_reps=job.min_reps,
        accuracy=job.accuracy, data=job.data or "", pairs=job.pairs, benchmarks=benchmarks.parse(job.benchmarks), limit_folds=job.limit_folds,
        parity_faces=job.parity_faces, show_progress=not job.quiet,
    )
    if log is None:
        log = (lambda *a: None) if job.quiet else (lambda msg: print(msg, file=sys.stderr))
    result = run_bench(items, settings, Path(job.out) / "work", log=log, embed_source=embed_source)
    result["errors"] = skipped + result["errors"]
    return BenchRun(result, report.write_all(result, job.out, job.name))
