"""`edgeface bench`: size, cold start, latency, throughput, memory, parity and accuracy per target."""
from __future__ import annotations

import sys


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
    """Add the `bench` subcommand and its options to the subparsers `sub`."""
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


def source_embeddings(source: str, faces):
    """The source model's (torch) embeddings of the parity faces: the bench's parity reference."""
    from ..zoo import load_embedder

    return load_embedder(source, device="cpu").embed(faces)


def run(args) -> int:
    """`edgeface bench`: run the benchmark job, print the table and the files written; returns 1 when a target is over budget or nothing could be measured."""
    from ..bench import report
    from ..bench.plan import BenchJob, bench

    job = BenchJob(models=args.models, profiles=args.profile, targets=args.targets, source=args.source, card=args.card, out=args.out, name=args.name,
                   threads=_threads(args.threads), throughput_batch=args.throughput_batch, min_time=args.min_time, max_time=args.max_time,
                   min_reps=args.min_reps, accuracy=not args.no_accuracy, benchmarks=args.benchmarks, data=args.data, pairs=args.pairs,
                   limit_folds=args.limit_folds, parity_faces=args.parity_faces, export_args=args.export_args, rebuild=args.rebuild, quiet=args.quiet)
    done = bench(job, embed_source=source_embeddings)
    print(report.table(done.result))
    print("wrote " + ", ".join(done.files.values()), file=sys.stderr)
    if done.over_budget:
        print(f"over budget: {', '.join(done.over_budget)}", file=sys.stderr)
    return 0 if done.ok else 1
