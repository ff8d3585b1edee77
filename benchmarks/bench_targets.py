#!/usr/bin/env python
"""Regenerate the per-target benchmark table and plot (docs/results/targets.md) from a real run.

    python benchmarks/bench_targets.py [MODEL ...] [--limit-folds N] [--update-docs]
    python benchmarks/bench_targets.py --collect out/bench/main.json --command "make main" --update-docs

MODEL defaults to the reference MobileFaceNet in ../shared plus every registry model that ships
trained weights. Each is exported (`edgeface export`) to every target this machine can export
and run, then `edgeface bench` measures size, cold start, latency (1 thread / all threads),
throughput, peak RSS, cosine parity to the source and LFW-dev accuracy. Results go to
benchmarks/results/targets.{json,csv,md,png}; --update-docs (alias --update-readme) rewrites the block between
<!-- bench:targets:start --> and <!-- bench:targets:end --> in docs/results/targets.md (the README links to it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:targets:start -->", "<!-- bench:targets:end -->"
DOC = Path("docs") / "results" / "targets.md"  # the page that shows the table, relative to ROOT


def default_models() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from edgeface import models
    from edgeface.core import paths

    out = [str(paths.reference_mobilefacenet())] if paths.reference_mobilefacenet().is_file() else []
    # one row set per weights: `default` is an alias of a registry model
    seen = set()
    for name in models.names():
        weights = models.get(name).weights
        if weights and weights not in seen:
            seen.add(weights)
            out.append(name)
    return out


def doc_block(result: dict, md_table: str, png: Path, command: str) -> str:
    """The marked block of DOC: the run's settings, its table and its plot (linked relative to DOC)."""
    png, root = Path(png).resolve(), ROOT.resolve()  # a relative --out is relative to the working directory
    rel = Path(os.path.relpath(png, (root / DOC).parent)).as_posix() if png.is_relative_to(root) else png
    s = result["settings"]
    folds = next((r.get("folds") for r in result["rows"] if r.get("folds")), None)
    load = result["machine"].get("load_average")
    lines = [
        START,
        f"Measured {result['started_utc']} with `{command}` "
        f"(latency: batch {s['batch']}, ≥ {s['min_reps']} timed calls and ≥ {s['min_time']:g} s after warm-up, p50 with its IQR; "
        f"throughput at batch {s['throughput_batch']}; each target in a fresh process; accuracy on LFW-dev, {folds} fold(s))."
        + (f" Load average when it finished: {load[0]:.1f} on {result['machine']['usable_cores']} cores — other work shared the machine, so latencies are inflated and may favour 1 thread." if load and load[0] > result["machine"]["usable_cores"] else ""),
        "",
        md_table,
        "",
        f"![accuracy vs latency per target]({rel})",
    ]
    if result.get("errors"):
        lines += ["", "Not measured here:"] + [f"- {e['target']}: {e['error'].splitlines()[0].replace(str(ROOT) + os.sep, '')[:300]}" for e in result["errors"]]
    lines.append(END)
    return "\n".join(lines)


def update_doc(block: str) -> None:
    """Replace the block between START and END in DOC (append it, under a heading, where DOC has none)."""
    doc = ROOT / DOC
    text = doc.read_text() if doc.is_file() else "# Every target (per-target benchmark table)\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Benchmarks per target\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def collect(result_file: Path, out: Path, command: str, update: bool) -> int:
    import shutil

    result = json.loads(result_file.read_text())  # fails loudly on a missing or broken file
    out.mkdir(parents=True, exist_ok=True)
    for ext in (".json", ".csv", ".md", ".png"):
        src = result_file.with_suffix(ext)
        if not src.is_file():
            print(f"{src}: missing (an `edgeface bench` run writes .json, .csv, .md and .png together)", file=sys.stderr)
            return 1
        if src.resolve() != (out / src.name).resolve():
            shutil.copyfile(src, out / src.name)
    if update:
        update_doc(doc_block(result, (out / result_file.with_suffix(".md").name).read_text().strip(), out / result_file.with_suffix(".png").name, command))
        print(f"{DOC} updated from {result_file}", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="models to export and measure (default: reference MobileFaceNet + registry models with weights)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="output folder (default benchmarks/results)")
    ap.add_argument("--targets", help="TARGET-PRECISION list (default: every target available here)")
    ap.add_argument("--limit-folds", type=int, help="LFW-dev folds for accuracy (default: all 5)")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--export-args", default="", help="extra `edgeface export` arguments, one string (e.g. quicker verification)")
    ap.add_argument("--update-docs", "--update-readme", dest="update_docs", action="store_true", help=f"rewrite the table block of {DOC} with this run")
    ap.add_argument("--collect", metavar="BENCH_JSON", help="measure nothing: copy an earlier `edgeface bench` result (e.g. make main's out/bench/main.json "
                    "with its .csv/.md/.png) into --out and, with --update-docs, show it in " + str(DOC))
    ap.add_argument("--command", help="with --collect: the command that produced it, as the page should name it (e.g. 'make main')")
    args = ap.parse_args()
    if args.collect:
        return collect(Path(args.collect), Path(args.out), args.command or "edgeface bench", args.update_docs)
    models = args.models or default_models()
    if not models:
        print("no models: pass MODEL paths, or put ../shared beside the checkout", file=sys.stderr)
        return 2
    out = Path(args.out)
    cmd = [sys.executable, "-m", "edgeface", "bench", *models, "--out", str(out), "--name", "targets", "--min-time", str(args.min_time)]
    if args.targets:
        cmd += ["--targets", args.targets]
    if args.limit_folds:
        cmd += ["--limit-folds", str(args.limit_folds)]
    if args.export_args:
        cmd += ["--export-args", args.export_args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    code = subprocess.run(cmd, env=env).returncode
    result_file = out / "targets.json"
    if not result_file.is_file():
        return code or 1
    if args.update_docs:
        result = json.loads(result_file.read_text())
        shown = "edgeface bench " + " ".join(Path(m).name if os.sep in m else m for m in models) + (f" --limit-folds {args.limit_folds}" if args.limit_folds else "")
        update_doc(doc_block(result, (out / "targets.md").read_text().strip(), out / "targets.png", shown))
        print(f"{DOC} updated from {result_file}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
