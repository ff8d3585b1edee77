"""dlib_resnet (the PyTorch port) against dlib itself, on LFW-dev.

1. Port parity: for N real faces, dlib's own chip (5-point shape predictor in YuNet's box,
   get_face_chip 150x150 padding 0.25) goes through dlib's compute_face_descriptor and through
   the port: cosine min/mean and the largest absolute difference.
2. Alignment: LFW-dev 5-fold accuracy of the port on dlib's chips (dlib's path; equal to
   dlib's own descriptors by part 1) and on the kit's alignment with the `dlib_150x150`
   template (what `edgeface eval dlib_resnet` measures).

    python benchmarks/experiments/dlib_parity.py [--faces 200] [--out benchmarks/results/dlib/parity.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgeface.core import paths
from edgeface.eval.verification import PairSet  # noqa: E402
from edgeface.eval.datasets import load_pairs  # noqa: E402
from edgeface.core.detect import YuNetDetector, pick_primary  # noqa: E402
from edgeface.core.progress import progress  # noqa: E402
from edgeface.core.imageio import read_image  # noqa: E402
from edgeface.models.embedder import TorchEmbedder  # noqa: E402
from edgeface.train.teacher import DLIB_CHIP_SIZE, DlibTeacher  # noqa: E402
from edgeface.zoo import load_torch_model  # noqa: E402


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/dlib/parity.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    model, card = load_torch_model("dlib_resnet")
    embedder = TorchEmbedder(model, card)
    teacher = DlibTeacher()  # dlib's own chip (DlibTeacher.chip) and descriptor network
    net = teacher.net
    detector = YuNetDetector(paths.yunet_model())

    data = paths.lfw_dev()
    pairs = load_pairs(data)
    images = sorted({q for p in pairs for q in (p.a, p.b)})
    chips = np.zeros((len(images), DLIB_CHIP_SIZE, DLIB_CHIP_SIZE, 3), np.uint8)
    found = np.zeros(len(images), bool)
    for i, f in enumerate(progress(images, len(images), "dlib chips", True)):
        img = read_image(f).pixels
        det = pick_primary(detector.detect(img), img.shape)
        if det is None:
            continue
        chips[i] = teacher.chip(img, det.box)
        found[i] = True

    # 1. parity on the first N faces (in sorted file order: many identities)
    idx = np.flatnonzero(found)[: args.faces]
    t0 = time.perf_counter()
    ref = np.array([np.array(net.compute_face_descriptor(chips[i])) for i in idx], np.float64)
    dlib_ms = (time.perf_counter() - t0) / len(idx) * 1e3
    with torch.no_grad():
        x = torch.from_numpy(chips[idx]).permute(0, 3, 1, 2).float()
        x = (x - torch.tensor(card.mean).view(1, 3, 1, 1)) / torch.tensor(card.std).view(1, 3, 1, 1)
        t0 = time.perf_counter()
        port = model(x).double().numpy()
        port_ms = (time.perf_counter() - t0) / len(idx) * 1e3
    cos = cosine(port, ref)

    # 2. LFW-dev accuracy: dlib's chips vs the kit's alignment, same port, same pairs
    index = {p: i for i, p in enumerate(images)}
    keep = [p for p in pairs if found[index[p.a]] and found[index[p.b]]]
    emb_dlib = embedder.embed(chips)
    from edgeface.eval.protocol import evaluate_scores

    ia, ib = np.array([index[p.a] for p in keep]), np.array([index[p.b] for p in keep])
    same, folds = np.array([p.same for p in keep]), np.array([p.fold for p in keep])
    rep_dlib, _ = evaluate_scores(np.sum(emb_dlib[ia] * emb_dlib[ib], axis=1).astype(np.float64), same, folds)
    kit = PairSet.load(data, card)
    rep_kit = kit.report(embedder.embed(kit.crops))
    result = {
        "model": "dlib_resnet",
        "parity": {"faces": int(len(idx)), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                   "max_abs_diff": float(np.abs(port - ref).max()), "dlib_ms_per_face": round(dlib_ms, 2), "port_ms_per_face_batched": round(port_ms, 2)},
        "lfw_dev": {
            "dlib_chip": {"accuracy": rep_dlib.accuracy_mean, "std": rep_dlib.accuracy_std, "pairs": len(keep)},
            "kit_alignment_dlib_150x150": {"accuracy": rep_kit["accuracy_mean"], "std": rep_kit["accuracy_std"], "pairs": rep_kit["num_pairs"], "failed": rep_kit["num_failed"]},
        },
        "command": f"python benchmarks/experiments/dlib_parity.py --faces {args.faces}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
