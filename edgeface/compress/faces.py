"""Aligned face crops for pruning statistics, distillation and calibration, cached as uint8 .npy.

Sources are the shared *training* sets (CelebA-299, AAF-8k); LFW-dev is only ever read for
evaluation. Crops are detected with YuNet (landmarks cached by LandmarkStore) and aligned
with the model card's template, so they match what the model sees at evaluation time.
The cache is plain uint8 arrays plus a JSON list of source files (no pickle).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import paths
from ..cache import cache_dir
from ..card import ModelCard
from ..data import IMAGE_SUFFIXES, load_pairs
from ..evaluate import aligned_crops, detect_all, progress
from ..landmarks import LandmarkStore

TRAIN_SOURCES = ("celeba-299", "aaf-8k")


def list_images(root: str | os.PathLike) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return files


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr, allow_pickle=False)
    os.replace(tmp, path)


def align_folder(root: str | os.PathLike, card: ModelCard, limit: int | None = None, seed: int = 0, show_progress: bool = True) -> np.ndarray:
    """Aligned (N, H, W, 3) uint8 crops of up to `limit` images (a seeded random subset) of a folder.

    Images where YuNet finds no face are skipped (a calibration/distillation set needs faces,
    not a failure rule). Cached under cache_dir('crops') keyed by folder, template and size.
    """
    files = list_images(root)
    if limit and limit < len(files):
        idx = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files = [files[i] for i in idx]
    h, w = card.input_size
    import hashlib

    root_id = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:8]
    name = "-".join(Path(root).resolve().parts[-2:])
    key = f"{name}-{root_id}-{card.template}-{h}x{w}-n{len(files)}-s{seed}"
    out = cache_dir("crops") / f"{key}.npy"
    if out.is_file():
        arr = np.load(out, allow_pickle=False)
        if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[1:] == (h, w, 3):
            return arr
    # The detect -> align loop is the export stage's (photos without a detectable face skipped).
    from ..export.faces import align_files

    faceset = align_files(files, card, store=LandmarkStore.default(), show_progress=show_progress)
    if not faceset.paths:
        raise ValueError(f"{root}: YuNet found no face in any of {len(files)} images")
    crops, used = faceset.crops, faceset.paths
    arr = crops.astype(np.uint8)
    _save_atomic(out, arr)
    out.with_suffix(".json").write_text(json.dumps({"files": used}))
    return arr


def training_faces(card: ModelCard, per_source: int = 1000, seed: int = 0, sources=TRAIN_SOURCES, show_progress: bool = True) -> np.ndarray:
    """Aligned crops from the shared training sets (never LFW), `per_source` from each, interleaved."""
    parts = [align_folder(paths.shared_dir() / "datasets" / s / "images", card, per_source, seed, show_progress) for s in sources]
    n = min(len(p) for p in parts)
    # Interleave so any prefix mixes the sources (CelebA in-the-wild + AAF East-Asian/ages).
    mixed = np.stack([p[:n] for p in parts], 1).reshape(-1, *parts[0].shape[1:])
    rest = [p[n:] for p in parts]
    return np.concatenate([mixed, *rest])


@dataclass
class PairSet:
    """LFW-style pairs over a set of aligned crops, for fast repeated evaluation of many models."""

    crops: np.ndarray  # (M, H, W, 3) uint8
    ia: np.ndarray
    ib: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    num_failed: int

    def subset(self, folds: int) -> "PairSet":
        """Only the pairs of the first `folds` folds, with only the crops they use."""
        sel = self.folds < folds
        used, inv = np.unique(np.concatenate([self.ia[sel], self.ib[sel]]), return_inverse=True)
        n = int(sel.sum())
        return PairSet(self.crops[used], inv[:n], inv[n:], self.same[sel], self.folds[sel], self.num_failed)

    def evaluate(self, embeddings: np.ndarray) -> dict:
        from ..protocol import evaluate_scores

        e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-10)
        scores = np.sum(e[self.ia] * e[self.ib], axis=1)
        report, _ = evaluate_scores(scores, self.same, self.folds)
        d = report.to_dict()
        d.update(num_pairs=int(len(self.ia)), num_failed=self.num_failed, num_folds=int(np.unique(self.folds).size))
        return d

    def evaluate_scores(self, scores: np.ndarray) -> dict:
        from ..protocol import evaluate_scores

        report, _ = evaluate_scores(np.asarray(scores, np.float64), self.same, self.folds)
        d = report.to_dict()
        d.update(num_pairs=int(len(self.ia)), num_failed=self.num_failed, num_folds=int(np.unique(self.folds).size))
        return d


def lfw_pairs(card: ModelCard, data: str | os.PathLike | None = None, folds: int | None = None, show_progress: bool = True) -> PairSet:
    """LFW-dev pairs (all folds, or the first `folds`) with crops aligned exactly as `edgeface eval` does
    (same detector cache, same no-face fallback rule), cached as uint8 .npy."""
    data = Path(data or paths.lfw_dev())
    pairs = load_pairs(data)
    if folds:
        pairs = [p for p in pairs if p.fold < folds]
    images = sorted({q for p in pairs for q in (p.a, p.b)})
    h, w = card.input_size
    cache = cache_dir("crops") / f"pairs-{data.resolve().name}-{card.template}-{h}x{w}-f{folds or 0}.npy"
    index = {p: i for i, p in enumerate(images)}
    store = LandmarkStore.default()
    faces = detect_all(images, store, show_progress)
    ok = np.array([faces.landmarks_for(p) is not None for p in images])
    if cache.is_file():
        crops = np.load(cache, allow_pickle=False)
    else:
        crops, ok = aligned_crops(images, faces, card, show_progress=show_progress)
        _save_atomic(cache, crops)
    failed = {p for p, r in faces.records.items() if r.status == "no_face"}
    keep = [p for p in pairs if ok[index[p.a]] and ok[index[p.b]]]
    return PairSet(
        crops,
        np.array([index[p.a] for p in keep]),
        np.array([index[p.b] for p in keep]),
        np.array([p.same for p in keep]),
        np.array([p.fold for p in keep]),
        sum(1 for p in keep if p.a in failed or p.b in failed),
    )
