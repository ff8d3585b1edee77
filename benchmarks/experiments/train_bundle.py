"""Pack what a training run needs into one folder that can travel to a GPU machine with no
access to ../shared: the aligned training crops (JPEG in an .npz, no pickle), the dlib
teacher's embeddings (NaN for sources not distilled), the LFW-dev pair crops for the
per-epoch monitor, and a tarball of the edgeface package.

    PYTHONPATH=$PWD python benchmarks/experiments/train_bundle.py --out /work/main/.carry/train \
        --data celeba-299,yaleb-38,lfw-extra --teacher-sources celeba-299,lfw-extra,yaleb-38
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeface.train.data import encode_jpeg_stack, load_training_sources  # noqa: E402
from edgeface.core import paths  # noqa: E402
from edgeface.eval.faces import crop_card  # noqa: E402
from edgeface.eval.verification import PairSet  # noqa: E402
from edgeface.train.teacher import teacher_embeddings  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="celeba-299,yaleb-38,lfw-extra")
    ap.add_argument("--teacher-sources", default="")
    ap.add_argument("--quality", type=int, default=92)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_training_sources(args.data.split(","))
    srcs = [s for s in args.teacher_sources.split(",") if s]
    teacher = teacher_embeddings("dlib", data, sources=srcs) if srcs else np.full((len(data), 128), np.nan, np.float32)
    buf, off = encode_jpeg_stack(data.crops, args.quality)
    np.savez(out / "train_faces.npz", jpeg=buf, offsets=off, labels=data.labels, identities=np.array(data.identities, dtype=str), sources=np.asarray(data.sources, dtype=str), teacher=teacher)
    full = PairSet.load(paths.lfw_dev(), crop_card())
    keep = full.pair_usable  # the bundle keeps only pairs whose images both have a face to embed
    lfw = PairSet.from_arrays(full.crops, full.ia[keep], full.ib[keep], full.same[keep], full.folds[keep])
    buf, off = encode_jpeg_stack(lfw.crops, args.quality)
    np.savez(out / "lfw_pairs.npz", jpeg=buf, offsets=off, ia=lfw.ia, ib=lfw.ib, same=lfw.same, folds=lfw.folds)
    subprocess.run(["tar", "czf", str(out / "edgeface.tgz"), "edgeface", "benchmarks/experiments/train_suite.py"], cwd=ROOT, check=True)
    for f in sorted(out.iterdir()):
        print(f"{f.name}: {f.stat().st_size / 1e6:.1f} MB")
    print(f"{len(data)} faces, {data.num_classes} identities, teacher rows {int(np.isfinite(teacher[:, 0]).sum())}; LFW pairs {len(lfw.ia)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
