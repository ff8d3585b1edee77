"""`edgeface fairness`: impostor FMR per demographic group at one threshold (eval.fairness)."""
from __future__ import annotations

import json
from pathlib import Path

from ..core import paths
from .eval import add_model_args

HELP = """Measure how a model's false match rate differs between groups of people (NIST FRTE's
demographic measure): faces are detected (YuNet) and aligned as `edgeface eval` does, near-duplicate
photos of one person are dropped, and every pair of two different people within one group is an
impostor pair of that group. Printed per group: the FMR at the bundle's own thresholds (for a
bundle) and at a threshold set on the pooled groups (each weighted equally) at each nominal FAR,
the max/min FMR ratio, and the threshold that would give the nominal FAR on each group alone.

Groups: --groups FILE, a CSV with columns image, group[, identity] (images relative to --data or
the CSV's folder; with identities, FNMR is reported too), or --data DIR whose file names carry
them: UTKFace (age_gender_race_date.jpg: four adult groups 18-70 and children <= 12; only the
files whose name's sha256 starts with 0-7 are read) or AAF (<index>A<age>.jpg: age groups)."""


def register(sub) -> None:
    """Add the `fairness` subcommand and its options to the subparsers `sub`."""
    p = sub.add_parser("fairness", help="false match rate per demographic group (FMR ratio, per-group thresholds)", description=HELP)
    add_model_args(p)
    p.add_argument("--data", help="image folder: UTKFace or AAF file names, or the root of --groups' relative paths")
    p.add_argument("--groups", help="CSV with columns image, group[, identity]")
    p.add_argument("--reader", choices=["utkface", "aaf"], help="how to read groups from --data's file names (default: guessed)")
    p.add_argument("--max-per-group", type=int, help="use at most N images per group (a seeded random choice; default: all)")
    p.add_argument("--far", default="1e-3,1e-4", help="nominal FARs, comma-separated (default 1e-3,1e-4)")
    p.add_argument("--dedup", choices=["flip", "none"], default="flip", help="drop near-duplicate photos (as alike as a face and its mirror image; default) or not")
    p.add_argument("--exclude", help="text file of image names to leave out (one a line), e.g. near-duplicates found with another model")
    p.add_argument("--thresholds", metavar="BUNDLE", help="measure at this bundle's thresholds (e.g. the bundle exported from MODEL) instead of MODEL's own")
    p.add_argument("--detector", default=str(paths.yunet_model()), help="YuNet ONNX model (default: ../shared/models/yunet/...)")
    p.add_argument("--json", help="write the full report as JSON here")
    p.add_argument("--plot", help="write the FMR-per-group plot (PNG, log scale) here")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch or the bundle's runtime (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def parse_fars(text: str) -> tuple[float, ...]:
    """'1e-3,1e-4' -> (0.001, 0.0001); each strictly between 0 and 1."""
    out = []
    for part in text.split(","):
        try:
            f = float(part)
        except ValueError:
            raise ValueError(f"--far: {part!r} is not a number (write e.g. 1e-3,1e-4)") from None
        if not 0 < f < 1:
            raise ValueError(f"--far: {part} is not a rate between 0 and 1")
        out.append(f)
    return tuple(out)


def run(args) -> int:
    """Measure, print the per-group table, write --json / --plot; returns 0."""
    from ..core.detect import YuNetDetector
    from ..core.landmarks import LandmarkStore
    from ..eval import fairness
    from .eval import open_model

    fars = parse_fars(args.far)
    pop = fairness.population(args.data, args.groups, args.reader).sample(args.max_per_group)
    exclude = set(Path(args.exclude).read_text().split()) if args.exclude else None
    embedder = open_model(args)
    detector = YuNetDetector(args.detector)
    store = LandmarkStore(detector, LandmarkStore.default_cache_file(detector))
    thresholds = None
    if args.thresholds:
        from ..runtime.bundle import read_meta

        thresholds = fairness.bundle_meta_thresholds(read_meta(args.thresholds))
    report = fairness.measure(embedder, pop, store, args.dedup, exclude, fars, show_progress=not args.quiet, thresholds=thresholds)
    if args.thresholds:
        report["thresholds_from"] = str(args.thresholds)
    report["model_path"] = str(args.model)
    print(fairness.format_report(report))
    dup = report["near_duplicates"]
    if dup.get("images_dropped") is not None:
        print(f"near-duplicates: {dup['pairs']} pairs at cosine >= {dup['threshold']:.4f}, {dup['images_dropped']} images dropped")
    if report["no_face"]:
        print("no face detected (left out): " + ", ".join(f"{g}: {n}" for g, n in report["no_face"].items()))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fairness.plot_fairness({report["model"]: report}, args.plot, title=f"{report['model']} ({report['backend']}) on {report['population']}: FMR per group")
        report["plot"] = args.plot
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0
