"""LFW-dev 5-fold accuracy (the `edgeface eval` pipeline: YuNet landmarks, alignment to each
card's template from the original images, 5-fold threshold) of trained checkpoints, with
params and MFLOPs, written to benchmarks/results/train_lfw_dev.{json,md}.

    PYTHONPATH=$PWD python benchmarks/train_eval.py runs/default/last.safetensors ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_lfw_dev"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from edgeface.core import paths
    from edgeface.eval.datasets import load_pairs
    from edgeface.core.detect import YuNetDetector
    from edgeface.eval.verification import PairSet
    from edgeface.core.landmarks import LandmarkStore
    from edgeface.models.complexity import count_mflops, count_params
    from edgeface.zoo import load_embedder

    pairs = load_pairs(paths.lfw_dev())
    det = YuNetDetector(paths.yunet_model())
    store = LandmarkStore(det, LandmarkStore.default_cache_file(det))
    rows = []
    for ck in args.checkpoints:
        emb = load_embedder(ck, device="cpu")
        rep = PairSet.load(pairs, emb.card, store=store, show_progress=False).evaluate(emb, show_progress=False)
        hist_file = Path(ck).parent / "history.json"
        hist = json.loads(hist_file.read_text())["history"] if hist_file.is_file() else []
        row = {
            "checkpoint": ck,
            "name": emb.card.name,
            "arch": emb.card.arch,
            "params": count_params(emb.model),
            "mflops": round(count_mflops(emb.model.cpu(), emb.card.input_size), 1),
            "accuracy_mean": rep["accuracy_mean"],
            "accuracy_std": rep["accuracy_std"],
            "auc": rep["auc"],
            "eer": rep["eer"],
            "num_pairs": rep["num_pairs"],
            "num_failed": rep["num_failed"],
            "epochs": hist[-1]["epoch"] if hist else None,
            "train_seconds": hist[-1].get("seconds") if hist else None,
        }
        rows.append(row)
        print(f"{row['name']:<34} {100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f} %  params {row['params'] / 1e6:.2f} M  {row['mflops']:.0f} MFLOPs", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    lines = ["| model | arch | LFW-dev 5-fold accuracy | AUC | EER | params | MFLOPs | epochs |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['arch']} | {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} % | {r['auc']:.4f} | {100 * r['eer']:.2f} % | {r['params'] / 1e6:.2f} M | {r['mflops']:.0f} | {r['epochs']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
