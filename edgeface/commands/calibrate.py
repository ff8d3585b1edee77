"""`edgeface calibrate`: re-seal a bundle's thresholds on the user's own people (export.calibrate)."""
from __future__ import annotations

import json

HELP = """Re-calibrate BUNDLE's decision thresholds on your own people, so that its FAR holds for
them: the shipped thresholds were set on the kit's calibration population, and on another population
the same threshold gives another FAR (`edgeface fairness` measures by how much).

--data DIR holds identity folders (DIR/<person>/<photo>; a flat folder counts each photo as its own
person) or, with --pairs FILE, the images of a pairs list (LFW pairs.txt or CSV a,b,same). Faces are
detected and aligned as in `edgeface eval` and embedded through the bundle itself. A population with
fewer than 10 / FAR impostor pairs for a FAR asked is refused. The model files are untouched; the
thresholds, the FAR curve, the conformance set's decisions and the digests are rewritten, with the
population, counts, date and the replaced thresholds recorded in edgeface.json."""


def register(sub) -> None:
    """Add the `calibrate` subcommand and its options to the subparsers `sub`."""
    p = sub.add_parser("calibrate", help="re-seal a bundle's thresholds on your own people", description=HELP)
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory")
    p.add_argument("--data", required=True, help="identity folders DIR/<person>/<photo> (or the images of --pairs)")
    p.add_argument("--pairs", help="pairs file (LFW pairs.txt or CSV a,b,same) instead of all pairs of the identity folders")
    p.add_argument("--far", default="1e-3,1e-4", help="FARs to calibrate, comma-separated; must include 1e-3 and 1e-4 (default 1e-3,1e-4)")
    p.add_argument("--out", help="write the re-sealed bundle here (default: replace BUNDLE)")
    p.add_argument("--population", help="name of the population recorded in the manifest (default: the --data folder's name)")
    p.add_argument("--json", action="store_true", help="print the new thresholds section as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    """Re-calibrate and print the new thresholds; returns 0."""
    from ..export.calibrate import recalibrate

    fars = [f.strip() for f in args.far.split(",") if f.strip()]
    th = recalibrate(args.bundle, args.data, args.pairs, fars, args.out, args.population, show_progress=not args.quiet)
    if args.json:
        print(json.dumps(th, indent=2))
        return 0
    cs = th["calibration_set"]
    print(f"re-calibrated on {cs['population']!r} ({cs['kind']}): {th['num_impostor']:,} impostor pairs, {th['num_genuine']:,} genuine pairs")
    for k, e in th["at_far"].items():
        prev = th["recalibration"]["previous"]["at_far"].get(k)
        tar = "n/a" if e["tar_calibration"] is None else f"{100 * e['tar_calibration']:.2f} %"
        print(f"  FAR {k}: threshold {e['threshold']:.6f} (was {prev}), FAR measured {e['far_measured']:.2e}, TAR {tar}")
    print(f"sealed: {args.out or args.bundle}")
    return 0
