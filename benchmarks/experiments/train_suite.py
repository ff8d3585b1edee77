"""Train the report's models from a bundle (benchmarks/experiments/train_bundle.py), all at once on
one GPU (one process each), each within a wall-time budget.

    python benchmarks/experiments/train_suite.py --bundle DIR --out OUT --budget 420 [--only NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# name -> (arch, losses, teacher?, distill_extra)
SUITE = {
    "default": ("mobilefacenet", ["multibatch"], True),
    "lightcnn9-multibatch": ("lightcnn9", ["multibatch"], False),
    "lightcnn9-multibatch-distill": ("lightcnn9", ["multibatch"], True),
    "mobilenet0.5-multibatch": ("mobilenet_v1_a0.5_r112", ["multibatch"], False),
    "mobilenet0.5-multibatch-distill": ("mobilenet_v1_a0.5_r112", ["multibatch"], True),
}


def load_bundle(bundle: Path):
    from edgeface.train.data import AlignedSet, decode_jpeg_stack
    from edgeface.eval.verification import PairSet

    with np.load(bundle / "train_faces.npz", allow_pickle=False) as z:
        crops = decode_jpeg_stack(z["jpeg"], z["offsets"])
        n = len(crops)
        data = AlignedSet(crops, z["labels"], [str(s) for s in z["identities"]], [f"bundle/{i}" for i in range(n)], np.zeros((n, 4), np.float32), np.zeros((n, 5, 2), np.float32), z["sources"])
        teacher = z["teacher"]
    with np.load(bundle / "lfw_pairs.npz", allow_pickle=False) as z:
        crops = decode_jpeg_stack(z["jpeg"], z["offsets"])
        lfw = PairSet.from_arrays(crops, z["ia"], z["ib"], z["same"], z["folds"])  # the pairs of usable images only
    return data, teacher, lfw


def run_one(name: str, bundle: Path, out: Path, budget: float, epochs: int) -> None:
    from edgeface.train.loop import TrainConfig, train

    arch, losses, distil = SUITE[name]
    data, teacher, lfw = load_bundle(bundle)
    cfg = TrainConfig(
        arch=arch, losses=losses, teacher="dlib" if distil else None, epochs=epochs, name=name, time_budget_s=budget,
        distill_weight=2.0, distill_extra=64 if distil else 0, data=sorted(set(data.sources.tolist())),
    )
    res = train(cfg, data, out / name, teacher if distil else None, lfw, show_progress=False)
    print(json.dumps({"name": name, "last": res["history"][-1]}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=420)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--only")
    ap.add_argument("--names", default=",".join(SUITE))
    args = ap.parse_args()
    bundle, out = Path(args.bundle), Path(args.out)
    if args.only:
        run_one(args.only, bundle, out, args.budget, args.epochs)
        return 0
    procs = {}
    t0 = time.time()
    for name in args.names.split(","):
        log = open(out / f"{name}.log", "w")
        procs[name] = subprocess.Popen([sys.executable, __file__, "--bundle", str(bundle), "--out", str(out), "--budget", str(args.budget), "--epochs", str(args.epochs), "--only", name], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    rc = 0
    for name, p in procs.items():
        rc |= p.wait()
        print(f"{name}: rc {p.returncode} after {time.time() - t0:.0f} s", flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
