"""Face verification evaluation: pairs -> detect (cached) -> align -> embed -> protocol.

Works with any embedder (torch model, ONNX/OpenVINO/TFLite bundle) that maps aligned
uint8 RGB crops to unit vectors, so every stage of the kit is measured the same way.

Failure rule (stated in every report): an image in which YuNet finds no face is aligned
with the dataset's mean landmarks (the average detection, in relative coordinates, over
images of the same size) and counted in `num_failed`; an image that cannot be read at all
excludes its pairs, counted in `num_excluded`. With on_fail="exclude", undetected images
exclude their pairs too.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..core.align import align_face
from ..core.card import ModelCard
from .datasets import Pair
from ..core.imageio import read_image
from ..core.landmarks import FaceRecord, LandmarkStore
from .protocol import evaluate_scores, plot_roc


class Embedder(Protocol):
    card: ModelCard
    backend: str

    def embed(self, faces: np.ndarray) -> np.ndarray: ...


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "img"):
    """A progress bar over `iterable`, one tick per item: `unit` must name what an item is."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, mininterval=1.0)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str = "", enabled: bool = True, unit: str = "img"):
    """A bar advanced by .update(n) (e.g. by a batch's image count), closed with .close()."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, mininterval=1.0)


@dataclass
class Detections:
    """Detections for a set of images plus the rule applied to those without one."""

    records: dict[str, FaceRecord]
    fallback_landmarks: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def landmarks_for(self, path: str, on_fail: str = "fallback") -> np.ndarray | None:
        r = self.records[path]
        if r.status == "ok":
            return r.landmarks
        if r.status == "no_face" and on_fail == "fallback" and r.image_size in self.fallback_landmarks:
            return self.fallback_landmarks[r.image_size]
        return None

    def problems(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.records.values() if r.status != "ok"))

    def notes(self) -> dict[str, int]:
        return dict(Counter(n for r in self.records.values() for n in r.notes))


def detect_all(paths: list[str], store: LandmarkStore, show_progress: bool = True) -> Detections:
    """Face records of every image (through the landmark cache, flushed even on errors) and the mean landmarks per
    image size from at least 10 successful detections, used for images without a face."""

    records: dict[str, FaceRecord] = {}
    try:
        for p in progress(paths, len(paths), "detect", show_progress):
            records[p] = store.get(p)
            records[p].path = p  # keep the caller's spelling of the path as the key
    finally:
        store.flush()
    # Mean landmarks per image size, in pixels, from the successful detections.
    by_size: dict[tuple[int, int], list[np.ndarray]] = {}
    for r in records.values():
        if r.status == "ok" and r.image_size:
            by_size.setdefault(tuple(r.image_size), []).append(r.landmarks)
    fallback = {size: np.mean(lms, axis=0) for size, lms in by_size.items() if len(lms) >= 10}
    return Detections(records, fallback)


def aligned_crops(paths: list[str], faces: Detections, card: ModelCard, on_fail: str = "fallback", show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 RGB crops for the images that can be used, and a bool mask of which."""
    h, w = card.input_size
    crops = np.zeros((len(paths), h, w, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    for i, p in enumerate(progress(paths, len(paths), "align", show_progress)):
        lm = faces.landmarks_for(p, on_fail)
        if lm is None:
            continue
        img = read_image(p).pixels
        crops[i] = align_face(img, lm, card.template, (h, w))
        ok[i] = True
    return crops, ok


def embed_crops(embedder: Embedder, crops: np.ndarray, flip: str = "none", batch: int = 256, show_progress: bool = True) -> np.ndarray:
    """Embeddings of aligned crops; flip='concat' or 'sum' adds the mirrored crop's (InsightFace/LFW practice)."""
    outs = []
    bar = progress_bar(len(crops), f"embed[{embedder.backend}]", show_progress)  # counts images, not batches
    for i in range(0, len(crops), batch):
        x = crops[i : i + batch]
        e = embedder.embed(x)
        if flip != "none":
            ef = embedder.embed(np.ascontiguousarray(x[:, :, ::-1]))
            e = np.concatenate([e, ef], 1) if flip == "concat" else e + ef
        outs.append(e)
        bar.update(len(x))
    bar.close()
    e = np.concatenate(outs) if outs else np.zeros((0, embedder.card.embedding_size), np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-10)


@dataclass
class PairEmbeddings:
    paths: list[str]
    index: dict[str, int]
    embeddings: np.ndarray
    usable: np.ndarray
    faces: Detections


def embed_pairs(embedder: Embedder, pairs: list[Pair], store: LandmarkStore, flip: str = "none", on_fail: str = "fallback", show_progress: bool = True) -> PairEmbeddings:
    """Detect, align and embed every image of the pairs once. Images that cannot be aligned get zero rows and
    ok=False; flip="concat" doubles the embedding width."""
    paths = sorted({p for pr in pairs for p in (pr.a, pr.b)})
    faces = detect_all(paths, store, show_progress)
    crops, ok = aligned_crops(paths, faces, embedder.card, on_fail, show_progress)
    emb = np.zeros((len(paths), embedder.card.embedding_size * (2 if flip == "concat" else 1)), np.float32)
    if ok.any():
        emb[ok] = embed_crops(embedder, crops[ok], flip, show_progress=show_progress)
    return PairEmbeddings(paths, {p: i for i, p in enumerate(paths)}, emb, ok, faces)


def pair_scores(pe: PairEmbeddings, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cosine scores, same labels, folds, usable mask) of every pair, in the pairs' order."""
    ia = np.array([pe.index[p.a] for p in pairs])
    ib = np.array([pe.index[p.b] for p in pairs])
    usable = pe.usable[ia] & pe.usable[ib]
    scores = np.sum(pe.embeddings[ia] * pe.embeddings[ib], axis=1)
    return scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]), usable


def verification_report(pe: PairEmbeddings, pairs: list[Pair], roc_png: str | None = None, title: str = "",
                        roc_points: dict[str, tuple[float, float]] | None = None) -> dict:
    """Verification report over the usable pairs: the evaluate_scores metrics plus pair, image and failure counts;
    with `roc_png` also draws the ROC curve there."""
    scores, labels, folds, usable = pair_scores(pe, pairs)
    report, (far, tar, _) = evaluate_scores(scores[usable], labels[usable], folds[usable])
    failed_imgs = {p for p, r in pe.faces.records.items() if r.status == "no_face"}
    num_failed = sum(1 for p in pairs if p.a in failed_imgs or p.b in failed_imgs)
    out = report.to_dict()
    out.update(
        num_pairs=len(pairs),
        num_scored=int(usable.sum()),
        num_failed=int(num_failed),
        num_excluded=int((~usable).sum()),
        num_images=len(pe.paths),
        image_problems=pe.faces.problems(),
        image_notes=pe.faces.notes(),
        num_folds=int(np.unique(folds).size),
    )
    if roc_png:
        plot_roc({title or "model": (far, tar)}, roc_png, title=f"ROC {title}".strip(), points=roc_points)
        out["roc_png"] = roc_png
    return out
