"""`edgeface eval`: verification accuracy of a model on a pairs dataset (LFW protocol)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..eval import benchmarks
from ..core import paths

HELP = """Evaluate a face embedder on labelled pairs: detect (YuNet, cached) -> align to the
model card's template -> embed -> k-fold accuracy (threshold from the other folds), ROC AUC,
EER, TAR at FAR. Prints a table; --json and --roc write machine-readable and PNG output.

MODEL may also be an exported bundle directory (measured through its own runtime, torch-free:
the file you ship) or a plain .onnx / OpenVINO .xml / .tflite file with --card. For a bundle the
report adds what the bundle's thresholds achieve on these pairs (FAR and TAR at each)."""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 112x96, got {text!r}") from None


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add the MODEL argument and the options that describe a foreign checkpoint (--arch, --input-size, --template, --embedding-size)."""
    p.add_argument("model", help="registry name (see `edgeface models`), .safetensors checkpoint, foreign .ckpt/.pt, a torch.export .pt2 file, "
                   "or your own module by import path pkg.module:factory (with --weights and --card)")
    p.add_argument("--card", help="model card JSON of a foreign model (`edgeface card new` writes it; a .pt2/.onnx file's MODEL.card.json "
                   "beside it is found without this), or of a plain .onnx/.xml/.tflite file")
    p.add_argument("--weights", help="weights (.safetensors only: no pickle is read) for a module given by import path")
    p.add_argument("--arch", help="architecture of a foreign checkpoint that edgeface does not recognise")
    p.add_argument("--input-size", type=_size, help="HxW input of a foreign checkpoint (e.g. 112x96)")
    p.add_argument("--template", help="alignment template of a foreign checkpoint (arcface_112x112 | sphereface_112x96)")
    p.add_argument("--embedding-size", type=int, default=128, help="embedding size of a foreign checkpoint (default 128)")


def register(sub) -> None:
    """Add the `eval` subcommand and its options to the subparsers `sub`."""
    p = sub.add_parser("eval", help="verification accuracy on a pairs dataset (LFW protocol)", description=HELP)
    add_model_args(p)
    p.add_argument("--benchmark", choices=sorted(benchmarks.BENCHMARKS), help="a named benchmark instead of --data/--pairs: lfw-dev (default), cfp-ff, cfp-fp")
    p.add_argument("--data", help="dataset folder with pairs.txt/pairs.csv (default: the benchmark's, ../shared/datasets/lfw-dev)")
    p.add_argument("--pairs", help="pairs file if not DATA/pairs.txt (LFW pairs.txt format or CSV with a,b,same[,fold])")
    p.add_argument("--detector", default=str(paths.yunet_model()), help="YuNet ONNX model (default: ../shared/models/yunet/...)")
    p.add_argument("--flip", choices=["none", "concat", "sum"], default="none", help="add the mirrored face's embedding (default none)")
    p.add_argument("--on-fail", choices=["fallback", "exclude"], default="fallback", help="images without a detected face: align with the dataset's mean landmarks (default) or drop their pairs")
    p.add_argument("--limit-folds", type=int, help="use only the first N folds (quick checks)")
    p.add_argument("--json", help="write the full report as JSON here")
    p.add_argument("--roc", help="write a ROC plot (PNG) here")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch or the bundle's runtime (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def format_table(rows: list[dict]) -> str:
    """Report dicts as a plain-text table: accuracy ± std, AUC, EER and TAR at FAR 1e-2/1e-3 in %, pairs and failed pairs."""
    cols = ["model", "backend", "accuracy", "auc", "eer", "tar@far=1e-2", "tar@far=1e-3", "pairs", "failed"]
    body = []
    for r in rows:
        tar = r.get("tar_at_far", {})
        body.append([
            r.get("model", ""),
            r.get("backend", ""),
            f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} %",
            f"{r['auc']:.4f}",
            f"{100 * r['eer']:.2f} %",
            f"{100 * tar['1e-2']:.2f} %" if "1e-2" in tar else "n/a",
            f"{100 * tar['1e-3']:.2f} %" if "1e-3" in tar else "n/a",
            str(r["num_pairs"]),
            str(r["num_failed"]),
        ])
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(b) for b in body])


def open_model(args):
    """A bundle directory or plain model file through its own runtime (torch-free), else a torch model."""
    from ..runtime.model_file import SUFFIX_BACKENDS

    spec = Path(args.model)
    if spec.is_dir() or spec.suffix.lower() in SUFFIX_BACKENDS:
        from ..bench.adapters import open_model as open_runtime_model

        return open_runtime_model(spec, threads=args.threads, card=args.card)
    from ..zoo import load_embedder

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return load_embedder(args.model, device=args.device, arch=args.arch, input_size=args.input_size, template=args.template, embedding_size=args.embedding_size,
                         card=args.card, weights=args.weights)


def select_pairs(args) -> tuple[str, list]:
    """(title, pairs) from --benchmark, or --data/--pairs (default LFW-dev), first --limit-folds folds."""
    from ..eval.datasets import first_folds, load_pairs

    if args.benchmark and (args.data or args.pairs):
        raise ValueError("--benchmark names its own data: pass either --benchmark or --data/--pairs")
    if args.data or args.pairs:
        data = args.data or str(Path(args.pairs).parent)
        title = Path(args.pairs).name if args.pairs else Path(data).name
        return title, first_folds(load_pairs(data, args.pairs), args.limit_folds)
    b = benchmarks.get(args.benchmark or "lfw-dev")
    return b.title, b.pairs(args.limit_folds)


def run(args) -> int:
    """`edgeface eval`: embed the selected pairs (detect, align, embed), print the verification table and the
    bundle's thresholds on these pairs, optionally write the JSON report and ROC plot; returns 0. Raises ValueError
    when no pairs are selected."""
    from ..core.detect import YuNetDetector
    from ..core.landmarks import LandmarkStore
    from ..eval.verification import verify_pairs

    title, pairs = select_pairs(args)
    if not pairs:
        raise ValueError(f"{title}: no pairs to evaluate (--limit-folds {args.limit_folds})")
    embedder = open_model(args)
    detector = YuNetDetector(args.detector)
    store = LandmarkStore(detector, LandmarkStore.default_cache_file(detector))
    report = verify_pairs(embedder, pairs, title, store, args.flip, args.on_fail, args.roc, show_progress=not args.quiet)
    report["model_path"] = str(args.model)
    print(format_table([report]))
    if "bundle_thresholds" in report:
        print(format_operating_points(report["bundle_thresholds"]))
    for key in ("image_problems", "image_notes"):
        if report[key]:
            print(f"{key.replace('_', ' ')}: " + ", ".join(f"{k}: {v}" for k, v in sorted(report[key].items())), file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True))
    return 0


def format_operating_points(ops: dict) -> str:
    """The bundle's calibrated thresholds and the FAR / TAR they achieve on these pairs, as text lines."""
    lines = ["bundle thresholds on these pairs:"]
    for far, o in ops.items():
        achieved = "n/a" if o["far"] is None else f"{o['far']:.2e} ({o['impostors_accepted']}/{o['num_impostor']} impostor pairs)"
        tar = "n/a" if o["tar"] is None else f"{100 * o['tar']:.2f} %"
        lines.append(f"  calibrated FAR {far}: threshold {o['threshold']:.4f} -> FAR {achieved}, TAR {tar}")
    return "\n".join(lines)
