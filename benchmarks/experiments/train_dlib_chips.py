"""dlib's own alignment (5-point shape predictor in YuNet's box -> get_face_chip 150x150,
padding 0.25) for every face of a cached aligned training set, stored as JPEG in an .npz,
so the dlib teacher can be run where the original images are not (a GPU machine).

    PYTHONPATH=$PWD python benchmarks/experiments/train_dlib_chips.py ALIGNED.npz OUT.npz [--part i/n]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgeface.core.imageio import read_image  # noqa: E402
from edgeface.train.data import encode_jpeg_stack, load_aligned  # noqa: E402
from edgeface.train.teacher import DlibTeacher  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("aligned")
    ap.add_argument("out")
    ap.add_argument("--part", default="0/1")
    ap.add_argument("--quality", type=int, default=85)
    args = ap.parse_args()
    i, n = (int(v) for v in args.part.split("/"))
    data = load_aligned(args.aligned)
    idx = np.arange(len(data))[i::n]
    t = DlibTeacher.__new__(DlibTeacher)  # chips only: the ResNet is not loaded
    import dlib

    from edgeface.train.teacher import dlib_model_files

    t._dlib = dlib
    t.shape_predictor = dlib.shape_predictor(str(dlib_model_files()[0]))
    chips = np.stack([t.chip(read_image(data.paths[k]).pixels, data.boxes[k]) for k in idx])
    buf, off = encode_jpeg_stack(chips, args.quality)
    np.savez(args.out, jpeg=buf, offsets=off, index=idx, paths=np.array([data.paths[k] for k in idx], dtype=str))
    print(f"{args.out}: {len(idx)} chips, {buf.nbytes / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
