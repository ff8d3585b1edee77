"""Split a population into people to calibrate on and other people to check on (docs/results/fairness.md).

    python benchmarks/calibration_split.py --utkface DIR --report docs/results/fairness-utkface-default.json \
        --out /tmp/split [--group "Children <= 12"]

Takes the UTKFace images a fairness report measured (the sha256 0-7 half, at most --max-per-group
per group, its near-duplicates left out: one person per photo), optionally one group only, and
splits them at random (seed 0) into two disjoint halves: OUT/calibrate/ (a flat folder of links:
each photo its own person, what `edgeface calibrate --data` reads) and OUT/check.csv (image,group:
one group "all" so that `edgeface fairness --groups` counts every pair of two of its people).
Then:

    edgeface calibrate BUNDLE --data OUT/calibrate --out NEW
    edgeface fairness NEW --groups OUT/check.csv --dedup none --json R.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from edgeface.eval import fairness as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utkface", required=True)
    ap.add_argument("--report", required=True, help="a fairness JSON of this population (for its near-duplicates)")
    ap.add_argument("--max-per-group", type=int, default=1200)
    ap.add_argument("--group", help="only this group")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rep = json.loads(Path(args.report).read_text())
    drop = set(rep["near_duplicates"]["dropped"])
    pop = F.utkface(args.utkface).sample(args.max_per_group)
    items = [(f, g) for f, g in zip(pop.files, pop.groups) if os.path.basename(f) not in drop and (not args.group or g == args.group)]
    perm = np.random.default_rng(args.seed).permutation(len(items))
    half = len(items) // 2
    out = Path(args.out)
    (out / "calibrate").mkdir(parents=True, exist_ok=True)
    for i in perm[:half]:
        link = out / "calibrate" / os.path.basename(items[i][0])
        if not link.exists():
            link.symlink_to(os.path.abspath(items[i][0]))
    with open(out / "check.csv", "w") as fh:
        fh.write("image,group\n")
        for i in sorted(perm[half:]):
            fh.write(f"{os.path.abspath(items[i][0])},all\n")
    print(f"{half} photos to calibrate on in {out / 'calibrate'}, {len(items) - half} to check on in {out / 'check.csv'}")


if __name__ == "__main__":
    main()
