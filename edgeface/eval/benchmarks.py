"""The named verification benchmarks the kit reports on: LFW-dev and CFP's frontal-frontal and
frontal-profile protocols (../shared), one place that says which folder and pairs file each is.

`edgeface eval --benchmark`, `edgeface bench --benchmarks` and the export verification record all
read their pairs from here, through edgeface.eval.datasets's readers (one pair loader).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core import paths
from ..core.card import ModelCard
from .datasets import Pair, first_folds, load_pairs
from .verification import PairSet


@dataclass(frozen=True)
class Benchmark:
    name: str  # command-line and JSON key: lfw-dev, cfp-ff, cfp-fp
    title: str  # table / plot heading
    folder: str  # under ../shared/datasets
    pairs_file: str | None  # None: the folder's pairs.txt
    about: str
    identity_depth: int = 1  # a file's person is its folder (LFW: Name/Name_0001.jpg) or the folder above (CFP: 001/frontal/01.jpg)
    impostors: str = "all"  # impostor scores for thresholds: "all" cross-identity pairs of its images, or "a_vs_b" (frontal vs profile)

    @property
    def key(self) -> str:
        """The key in JSON records (parity.lfw_dev, parity.cfp_fp, ...)."""
        return self.name.replace("-", "_")

    def data_dir(self) -> Path:
        return paths.shared_dir() / "datasets" / self.folder

    def pairs_path(self) -> Path:
        return self.data_dir() / (self.pairs_file or "pairs.txt")

    def identity(self, path: str) -> str:
        """The person an image shows, from its path (the folder layout of this benchmark)."""
        return Path(path).parents[self.identity_depth - 1].name

    def pairs(self, limit_folds: int | None = None) -> list[Pair]:
        """The benchmark's pairs (only the first `limit_folds` folds when given)."""
        return first_folds(load_pairs(self.data_dir(), self.pairs_path()), limit_folds)

    def pair_set(self, card: ModelCard, limit_folds: int | None = None, show_progress: bool = True) -> PairSet:
        """The benchmark's pairs detected and aligned for `card` (eval.verification.PairSet.load)."""
        return PairSet.load(self.pairs(limit_folds), card, show_progress=show_progress)


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("lfw-dev", "LFW-dev", "lfw-dev", None, "LFW View-2 folds 1-5: 3,000 pairs, mostly frontal news photos"),
        Benchmark("cfp-ff", "CFP-FF", "cfp-dev", "pairs_ff.csv", "CFP folds 1-5, frontal vs frontal: 3,500 pairs", 2),
        Benchmark("cfp-fp", "CFP-FP", "cfp-dev", "pairs_fp.csv", "CFP folds 1-5, frontal vs profile: 3,500 pairs (pose)", 2, "a_vs_b"),
    )
}
DEFAULT = ("lfw-dev",)


def get(name: str) -> Benchmark:
    """The named benchmark; raises ValueError listing the known names for an unknown one."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def parse(text: str) -> tuple[str, ...]:
    """'lfw-dev,cfp-fp' or 'all' -> names, each checked."""
    if text.strip() == "all":
        return tuple(BENCHMARKS)
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError("--benchmarks: name at least one of " + ", ".join(BENCHMARKS) + " (or 'all')")
    for n in names:
        get(n)
    return names
