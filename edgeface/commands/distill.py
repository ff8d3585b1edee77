"""`edgeface distill`: the staged prune -> distil job (edgeface.train.staged) that made the shipped `default`."""
from __future__ import annotations

import argparse
import sys

HELP = """Prune a dense teacher's inner channels in phases and retrain the pruned network by
distillation from the dense one after every phase (the recipe's [[phase]] tables). Resumable:
rerun the same command and it starts after the last finished phase. Writes RUN/report.{json,md}
and one checkpoint per phase. --package CKPT writes a checkpoint as package weights (fp16 storage,
the recipe's card: name, description, licence naming every training source's terms).

  edgeface distill --recipe default-edge --run-dir runs/edge
  edgeface distill --recipe default-edge --package runs/edge/dlib_resnet_edge_p5.safetensors --out W.safetensors"""


def register(sub) -> None:
    """Add the `distill` subcommand to the subparsers `sub`."""
    p = sub.add_parser("distill", help="staged prune -> distil from a dense teacher (the job that made `default`)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="default-edge", help="a name (edgeface/configs/distill/NAME.toml) or a .toml path (default default-edge)")
    p.add_argument("--run-dir", help="folder for the phases' checkpoints, state and report (a rerun resumes there)")
    p.add_argument("--package", metavar="CKPT", help="instead of training: write CKPT as package weights with the recipe's card")
    p.add_argument("--out", help="with --package: the weights file to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    """Run/resume the recipe in --run-dir, or package a checkpoint; raises ValueError for a missing option."""
    from ..train.staged import load_staged_recipe, package_weights, run_staged

    recipe = load_staged_recipe(args.recipe)
    if args.package:
        if not args.out:
            raise ValueError("--package needs --out (the weights file to write)")
        print(package_weights(args.package, recipe, args.out))
        return 0
    if not args.run_dir:
        raise ValueError("distill needs --run-dir (or --package CKPT --out FILE)")
    report = run_staged(recipe, args.run_dir, show_progress=not args.quiet, log=lambda m: print(f"[distill] {m}", file=sys.stderr, flush=True))
    print(report["final_checkpoint"])
    return 0
