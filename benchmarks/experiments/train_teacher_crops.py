"""A teacher fed the student's training crops: LFW-dev accuracy of a torch teacher when its
input is the ArcFace 112x112 crop re-framed to the teacher's own template
(edgeface.train.teacher.crop_to_template), i.e. exactly what distillation gives it.

    nice -n 10 python benchmarks/experiments/train_teacher_crops.py --teacher dlib_resnet --out benchmarks/results/train_teacher_crops.json

Compare with the teacher's own `edgeface eval` (aligned directly to its template)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="dlib_resnet", help="registry name or checkpoint (default dlib_resnet, issue 15's port)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/train_teacher_crops.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from edgeface.core import paths
    from edgeface.eval.faces import crop_card
    from edgeface.eval.verification import PairSet
    from edgeface.train.loop import crops_to_tensor
    from edgeface.train.teacher import TorchTeacher

    try:
        teacher = TorchTeacher(args.teacher, device="cpu")
    except (KeyError, ValueError, FileNotFoundError) as exc:
        print(f"teacher {args.teacher!r} not available: {exc}", file=sys.stderr)
        return 2
    pairs = PairSet.load(paths.lfw_dev(), crop_card(), show_progress=False)
    t0 = time.time()
    emb = np.concatenate([teacher(crops_to_tensor(pairs.crops[i : i + 64], "cpu").float())[0].numpy() for i in range(0, len(pairs.crops), 64)])
    seconds = time.time() - t0
    d = pairs.report(emb)
    result = {
        "teacher": args.teacher, "template": teacher.card.template, "input_size": list(teacher.card.input_size),
        "input": "arcface_112x112 training-style crops re-framed by crop_to_template",
        "faces": int(len(pairs.crops)), "lfw_dev_accuracy": d["accuracy_mean"], "lfw_dev_accuracy_std": d["accuracy_std"], "auc": d["auc"],
        "faces_per_s_wall": len(pairs.crops) / seconds, "threads": args.threads,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
