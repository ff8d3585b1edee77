"""Training faces: detect once, align once, cache the crops (uint8 .npz, no pickle).

A training set is a list of (image path, identity). Every image is detected with YuNet,
aligned to the ArcFace 112x112 template (the default model's), and stored with its
landmarks and box in ``cache_dir('train')/<name>-<hash>.npz``; the hash covers the file
list, the detector and the template, so a changed dataset is re-aligned. Images with no
detected face are dropped and counted (``num_dropped``), never silently aligned on a guess.

The LFW-dev evaluation identities must never reach training: :func:`check_no_lfw_identities`
is called by every loader that builds a training set, and raises if one slips in.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.align import align_face
from ..core.cache import cache_dir
from ..eval.datasets import IMAGE_SUFFIXES, identity_folder, lfw_pair_identities, load_pairs
from ..core import paths

TRAIN_TEMPLATE = "arcface_112x112"
TRAIN_SIZE = (112, 112)

# Named training sources under ../shared/datasets and how their identities are laid out.
#  identities: <root>/images/<identity>/<image>; singletons: one person per file (AAF-8k);
#  lfw_extra: LFW-dev identities listed in extra_identities.txt (none of them is in a pair).
SOURCES = {
    "celeba-299": "identities",
    "yaleb-38": "identities",
    "aaf-8k": "singletons",
    "lfw-extra": "lfw_extra",
}


class LFWLeakError(ValueError):
    """A training set contains an identity that appears in the LFW-dev evaluation pairs."""


def lfw_forbidden_identities(lfw_root: str | os.PathLike | None = None) -> set[str]:
    """Identities in LFW-dev's pairs (kept out of training); empty when the dataset has no pairs.txt."""
    root = Path(lfw_root) if lfw_root else paths.lfw_dev()
    if not (root / "pairs.txt").is_file():
        return set()
    return lfw_pair_identities(load_pairs(root))


def check_no_lfw_identities(items: list[tuple[str, str]], forbidden: set[str], source: str = "") -> None:
    """Raise if any image path lies in an LFW pair identity's folder, or is labelled as one."""
    bad = sorted({ident for p, ident in items if ident in forbidden or Path(p).parent.name in forbidden and "lfw" in str(p).lower()})
    if bad:
        raise LFWLeakError(f"{source or 'training set'}: {len(bad)} identities appear in the LFW-dev evaluation pairs (e.g. {bad[:3]}); they must never be trained on")


def list_source(name_or_path: str, shared: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(path, identity) items of a named source (see SOURCES) or an identity-folder path.

    Identities are prefixed with the source name so two datasets never share a label.
    """
    base = Path(shared) if shared else paths.shared_dir()
    forbidden = lfw_forbidden_identities(base / "datasets" / "lfw-dev")
    kind = SOURCES.get(name_or_path)
    if kind is None:
        root = Path(name_or_path)
        items = [(p, f"{root.name}/{i}") for p, i in identity_folder(root)]
        # A user's folder may hold LFW: compare bare identity names too.
        check_no_lfw_identities([(p, i.split("/", 1)[1]) for p, i in items], forbidden, str(root))
        return items
    root = base / "datasets" / ("lfw-dev" if kind == "lfw_extra" else name_or_path)
    if kind == "identities":
        items = [(p, f"{name_or_path}/{i}") for p, i in identity_folder(root)]
    elif kind == "singletons":
        img_dir = root / "images" if (root / "images").is_dir() else root
        files = sorted(f for f in img_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        items = [(str(f), f"{name_or_path}/{f.stem}") for f in files]
    else:
        extra = [ln.strip() for ln in (root / "extra_identities.txt").read_text().splitlines() if ln.strip()]
        leaked = sorted(set(extra) & forbidden)
        if leaked:
            raise LFWLeakError(f"{root}/extra_identities.txt lists identities used in pairs.txt: {leaked[:3]}")
        raw = identity_folder(root, identities=set(extra))
        check_no_lfw_identities(raw, forbidden, str(root))
        items = [(p, f"lfw-extra/{i}") for p, i in raw]
    return items


@dataclass
class AlignedSet:
    """Aligned uint8 RGB crops with integer labels (contiguous 0..C-1) and provenance."""

    crops: np.ndarray  # (N, 112, 112, 3) uint8 RGB
    labels: np.ndarray  # (N,) int64
    identities: list[str]  # label -> identity name
    paths: list[str]
    boxes: np.ndarray  # (N, 4) YuNet box x1 y1 x2 y2
    landmarks: np.ndarray  # (N, 5, 2)
    sources: np.ndarray  # (N,) source name per image
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def subset(self, idx: np.ndarray) -> "AlignedSet":
        idx = np.asarray(idx)
        old = self.labels[idx]
        uniq, new = np.unique(old, return_inverse=True)
        return AlignedSet(self.crops[idx], new.astype(np.int64), [self.identities[u] for u in uniq], [self.paths[i] for i in idx], self.boxes[idx], self.landmarks[idx], self.sources[idx], dict(self.meta))

    @staticmethod
    def concat(sets: list["AlignedSet"]) -> "AlignedSet":
        offs, labels, idents = 0, [], []
        for s in sets:
            labels.append(s.labels + offs)
            idents.extend(s.identities)
            offs += s.num_classes
        return AlignedSet(
            np.concatenate([s.crops for s in sets]),
            np.concatenate(labels),
            idents,
            [p for s in sets for p in s.paths],
            np.concatenate([s.boxes for s in sets]),
            np.concatenate([s.landmarks for s in sets]),
            np.concatenate([s.sources for s in sets]),
            {"parts": [s.meta for s in sets]},
        )


def _digest(items: list[tuple[str, str]], detector_path: str) -> str:
    h = hashlib.sha256()
    h.update(f"{TRAIN_TEMPLATE}{TRAIN_SIZE}{Path(detector_path).name}".encode())
    for p, i in items:
        h.update(f"{p}\0{i}\0".encode())
    return h.hexdigest()[:12]


def align_items(items: list[tuple[str, str]], source: str, detector=None, cache: bool = True, show_progress: bool = True) -> AlignedSet:
    """Detect + align every image once; later calls load the cached .npz."""
    from ..core.detect import YuNetDetector, pick_primary
    from ..core.progress import progress
    from ..core.imageio import ImageError, read_image

    det_path = str(detector.model_path) if detector is not None else str(paths.yunet_model())
    key = _digest(items, det_path)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source)
    cfile = cache_dir("train") / f"{safe}-{key}.npz"
    if cache and cfile.is_file():
        return load_aligned(cfile)
    detector = detector or YuNetDetector(det_path)
    n = len(items)
    crops = np.zeros((n, *TRAIN_SIZE, 3), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    lms = np.zeros((n, 5, 2), np.float32)
    keep = np.zeros(n, bool)
    reasons: dict[str, int] = {}
    for k, (p, _) in enumerate(progress(items, n, f"align[{source}]", show_progress)):
        try:
            img = read_image(p).pixels
        except ImageError as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
            continue
        d = pick_primary(detector.detect(img), img.shape)
        if d is None:
            reasons["no_face"] = reasons.get("no_face", 0) + 1
            continue
        crops[k] = align_face(img, d.landmarks, TRAIN_TEMPLATE, TRAIN_SIZE)
        boxes[k], lms[k], keep[k] = d.box, d.landmarks, True
    idx = np.flatnonzero(keep)
    names = [items[i][1] for i in idx]
    uniq, labels = np.unique(np.array(names), return_inverse=True)
    meta = {"source": source, "num_listed": n, "num_dropped": int(n - len(idx)), "dropped": reasons, "template": TRAIN_TEMPLATE, "key": key}
    out = AlignedSet(crops[idx], labels.astype(np.int64), [str(u) for u in uniq], [items[i][0] for i in idx], boxes[idx], lms[idx], np.array([source] * len(idx)), meta)
    if cache:
        save_aligned(out, cfile)
    if show_progress:
        print(f"{source}: {len(idx)}/{n} faces aligned, {len(uniq)} identities, dropped {reasons}", file=sys.stderr)
    return out


def save_aligned(s: AlignedSet, path: str | os.PathLike) -> Path:
    """Save an aligned set as an uncompressed .npz, atomically (written beside it as NAME.tmp.npz, then renamed); returns the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        crops=s.crops,
        labels=s.labels,
        identities=np.array(s.identities, dtype=str),
        paths=np.array(s.paths, dtype=str),
        boxes=s.boxes,
        landmarks=s.landmarks,
        sources=np.asarray(s.sources, dtype=str),
        meta=np.array(json.dumps(s.meta)),
    )
    os.replace(tmp, path)
    return path


def load_aligned(path: str | os.PathLike) -> AlignedSet:
    """Load an aligned set written by save_aligned. Raises FileNotFoundError when missing, ValueError naming the
    file when arrays are missing or the crops are not (N, H, W, 3) uint8."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: aligned training set not found")
    with np.load(path, allow_pickle=False) as z:
        need = {"crops", "labels", "identities", "paths", "boxes", "landmarks", "sources"}
        if not need <= set(z.files):
            raise ValueError(f"{path}: not an edgeface aligned set (needs arrays {sorted(need)}, has {sorted(z.files)})")
        crops = z["crops"]
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"{path}: crops must be (N, H, W, 3) uint8, got {crops.shape} {crops.dtype}")
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        return AlignedSet(crops, z["labels"].astype(np.int64), [str(x) for x in z["identities"]], [str(x) for x in z["paths"]], z["boxes"], z["landmarks"], z["sources"], meta)


def load_training_sources(names: list[str], shared: str | os.PathLike | None = None, show_progress: bool = True, max_per_source: int | None = None) -> AlignedSet:
    """Align (once) and concatenate training sources; re-checks the LFW exclusion on the result."""
    base = Path(shared) if shared else paths.shared_dir()
    forbidden = lfw_forbidden_identities(base / "datasets" / "lfw-dev")
    parts = []
    for name in names:
        items = list_source(name, base)
        if max_per_source:
            items = items[:max_per_source]
        parts.append(align_items(items, name if name in SOURCES else Path(name).name, show_progress=show_progress))
    out = AlignedSet.concat(parts) if len(parts) > 1 else parts[0]
    check_no_lfw_identities([(p, i.split("/", 1)[-1]) for p, i in zip(out.paths, [out.identities[l] for l in out.labels]) if "lfw" in p.lower()], forbidden, "training set")
    return out


def encode_jpeg_stack(crops: np.ndarray, quality: int = 92) -> tuple[np.ndarray, np.ndarray]:
    """Compress (N, H, W, 3) uint8 RGB crops to one flat JPEG byte buffer + offsets (N+1,),
    a pickle-free way to move a training set between machines (about 10x smaller)."""
    import cv2

    bufs = []
    for c in crops:
        ok, b = cv2.imencode(".jpg", np.ascontiguousarray(c[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding of a crop failed")
        bufs.append(b.ravel())
    offsets = np.zeros(len(bufs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in bufs])
    return (np.concatenate(bufs) if bufs else np.zeros(0, np.uint8)), offsets


def decode_jpeg_stack(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Decode concatenated JPEG crops (crop i is buf[offsets[i]:offsets[i+1]]) to (N, H, W, 3) uint8 RGB; raises
    ValueError naming a crop that cannot be decoded."""
    import cv2

    out = []
    for i in range(len(offsets) - 1):
        img = cv2.imdecode(buf[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"crop {i}: JPEG data cannot be decoded")
        out.append(img[..., ::-1])
    return np.ascontiguousarray(np.stack(out)) if out else np.zeros((0, *TRAIN_SIZE, 3), np.uint8)
