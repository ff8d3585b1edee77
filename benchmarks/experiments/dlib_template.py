"""Fit the 150x150 5-point template that reproduces dlib's face chip from YuNet landmarks.

dlib aligns with its own 5-point shape predictor (eye corners + nose base) and
``get_face_chip_details(size=150, padding=0.25)``: a least-squares similarity from those
5 points onto fixed chip positions. edgeface aligns every model from YuNet's 5 points
(eye centres, nose tip, mouth corners). For each training face (CelebA-299 + AAF-8k, never
LFW/CFP) this maps YuNet's points into dlib's chip with dlib's own transform; the template is
their mean, and the spread says how far one face's chip can move against dlib's.

    python benchmarks/experiments/dlib_template.py [--faces 1500] [--out benchmarks/results/dlib/template.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgeface.core import paths
from edgeface.core.align import similarity_transform  # noqa: E402
from edgeface.eval.datasets import IMAGE_SUFFIXES  # noqa: E402
from edgeface.core.detect import YuNetDetector, pick_primary  # noqa: E402
from edgeface.core.progress import progress  # noqa: E402
from edgeface.core.imageio import ImageError, read_image  # noqa: E402
from edgeface.train.teacher import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, dlib_model_files  # noqa: E402

# dlib's 5-point chip positions (interpolation.h, get_face_chip_details), unit square.
DLIB_CHIP_POINTS = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677], [0.1205750620789, 0.2137274526848],
                             [0.3340850613712, 0.2290642403242], [0.4901123135679, 0.6277975316475]])


def dlib_chip_points(size: int = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING) -> np.ndarray:
    return (padding + DLIB_CHIP_POINTS) / (2 * padding + 1) * size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/dlib/template.json")
    args = ap.parse_args()
    import dlib

    shared = paths.shared_dir()
    files = sorted(str(p) for src in ("celeba-299", "aaf-8k") for p in (shared / "datasets" / src).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    rng = np.random.default_rng(args.seed)
    files = [files[i] for i in rng.permutation(len(files))]
    predictor = dlib.shape_predictor(str(dlib_model_files()[0]))
    detector = YuNetDetector(paths.yunet_model())
    chip = dlib_chip_points()
    mapped = []
    for f in progress(files, min(len(files), args.faces), "faces", True):
        if len(mapped) >= args.faces:
            break
        try:
            img = read_image(f).pixels
        except ImageError:
            continue
        det = pick_primary(detector.detect(img), img.shape)
        if det is None:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        shape = predictor(img, dlib.rectangle(x1, y1, x2, y2))
        parts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
        m = similarity_transform(parts, chip)  # image -> dlib chip, as get_face_chip_details fits it
        mapped.append(det.landmarks @ m[:, :2].T + m[:, 2])
    pts = np.stack(mapped)
    template = pts.mean(axis=0)
    spread = np.linalg.norm(pts - template, axis=2)
    result = {
        "faces": len(pts),
        "sources": ["celeba-299", "aaf-8k"],
        "chip": {"size": DLIB_CHIP_SIZE, "padding": DLIB_CHIP_PADDING},
        "template_xy": np.round(template, 4).tolist(),
        "distance_px": {"mean": np.round(spread.mean(axis=0), 3).tolist(), "p95": np.round(np.percentile(spread, 95, axis=0), 3).tolist()},
        "command": "python benchmarks/experiments/dlib_template.py --faces %d --seed %d" % (args.faces, args.seed),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
