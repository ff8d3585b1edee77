"""`edgeface eval`: verification accuracy of a model on a pairs dataset (LFW protocol)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import paths

HELP = """Evaluate a face embedder on labelled pairs: detect (YuNet, cached) -> align to the
model card's template -> embed -> k-fold accuracy (threshold from the other folds), ROC AUC,
EER, TAR at FAR. Prints a table; --json and --roc write machine-readable and PNG output."""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 112x96, got {text!r}") from None


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registry name (see `edgeface models`), .safetensors checkpoint, or foreign .ckpt/.pt")
    p.add_argument("--arch", help="architecture of a foreign checkpoint that edgeface does not recognise")
    p.add_argument("--input-size", type=_size, help="HxW input of a foreign checkpoint (e.g. 112x96)")
    p.add_argument("--template", help="alignment template of a foreign checkpoint (arcface_112x112 | sphereface_112x96)")
    p.add_argument("--embedding-size", type=int, default=128, help="embedding size of a foreign checkpoint (default 128)")


def register(sub) -> None:
    p = sub.add_parser("eval", help="verification accuracy on a pairs dataset (LFW protocol)", description=HELP)
    add_model_args(p)
    p.add_argument("--data", default=str(paths.lfw_dev()), help="dataset folder with pairs.txt/pairs.csv (default: ../shared/datasets/lfw-dev)")
    p.add_argument("--pairs", help="pairs file if not DATA/pairs.txt (LFW pairs.txt format or CSV with a,b,same[,fold])")
    p.add_argument("--detector", default=str(paths.yunet_model()), help="YuNet ONNX model (default: ../shared/models/yunet/...)")
    p.add_argument("--flip", choices=["none", "concat", "sum"], default="none", help="add the mirrored face's embedding (default none)")
    p.add_argument("--on-fail", choices=["fallback", "exclude"], default="fallback", help="images without a detected face: align with the dataset's mean landmarks (default) or drop their pairs")
    p.add_argument("--limit-folds", type=int, help="use only the first N folds (quick checks)")
    p.add_argument("--json", help="write the full report as JSON here")
    p.add_argument("--roc", help="write a ROC plot (PNG) here")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def format_table(rows: list[dict]) -> str:
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


def run(args) -> int:
    from ..data import load_pairs
    from ..detect import YuNetDetector
    from ..evaluate import embed_pairs, verification_report
    from ..landmarks import LandmarkStore
    from ..zoo import load_embedder

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    embedder = load_embedder(args.model, device=args.device, arch=args.arch, input_size=args.input_size, template=args.template, embedding_size=args.embedding_size)
    pairs = load_pairs(args.data, args.pairs)
    if args.limit_folds:
        pairs = [p for p in pairs if p.fold < args.limit_folds]
    detector = YuNetDetector(args.detector)
    store = LandmarkStore(detector, LandmarkStore.default_cache_file(detector))
    pe = embed_pairs(embedder, pairs, store, flip=args.flip, on_fail=args.on_fail, show_progress=not args.quiet)
    report = verification_report(pe, pairs, roc_png=args.roc, title=embedder.card.name)
    report.update(
        model=embedder.card.name,
        backend=embedder.backend,
        card=embedder.card.to_dict(),
        data=str(args.data),
        flip=args.flip,
        on_fail=args.on_fail,
        failure_rule="no face: aligned with the dataset's mean landmarks for that image size (counted in num_failed); unreadable: pair excluded (num_excluded)"
        if args.on_fail == "fallback"
        else "no face or unreadable: pair excluded (num_excluded)",
    )
    print(format_table([report]))
    if report["image_problems"]:
        print("image problems: " + ", ".join(f"{k}: {v}" for k, v in sorted(report["image_problems"].items())), file=sys.stderr)
    if report["image_notes"]:
        print("image notes: " + ", ".join(f"{k}: {v}" for k, v in sorted(report["image_notes"].items())), file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True))
    return 0
