"""What the compression benchmarks share: which model (the third-party reference by default, or
any registry name / checkpoint, e.g. `default`), the LFW-dev pairs, and a result file whose
stem names the model, so runs on different models never overwrite each other."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeface import zoo
from edgeface.core import paths
from edgeface.eval.verification import PairSet


def add_setup_args(ap: argparse.ArgumentParser, folds: int) -> None:
    ap.add_argument("--model", help="registry name or checkpoint (default: the reference MobileFaceNet in ../shared)")
    ap.add_argument("--folds", type=int, default=folds, help=f"LFW-dev folds to evaluate on (default {folds})")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))


@dataclass
class Setup:
    out: Path
    stem: str  # result files: OUT/STEM.{json,md,png}
    res_file: Path
    model: torch.nn.Module
    card: object
    pairs: PairSet

    def load(self, empty: dict) -> dict:
        return json.loads(self.res_file.read_text()) if self.res_file.is_file() else empty

    def save(self, res: dict) -> None:
        self.res_file.write_text(json.dumps(res, indent=2))


def setup(args, base_stem: str) -> Setup:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = args.model or str(paths.reference_mobilefacenet())
    stem = base_stem if not args.model else f"{base_stem}_{Path(args.model).stem}"
    model, card = zoo.load_torch_model(spec)
    pairs = PairSet.load(paths.lfw_dev(), card)
    if args.folds < 5:
        pairs = pairs.subset(args.folds)
    return Setup(out, stem, out / f"{stem}.json", model, card, pairs)
