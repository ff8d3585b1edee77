"""Aligned face sets from the shared data: one detect (YuNet, cached) -> align (the card's template) path.

  * AlignedFaces: photos detected and aligned, for calibration, parity checks and threshold
    calibration (export), and for pruning statistics, distillation and quantization calibration
    (compress); photos without a detectable face are skipped, not guessed;
  * default_split / threshold_calibration_population: the fixed-seed, disjoint file lists from
    ../shared the export uses (never LFW-dev pairs, which are kept for evaluation):
      calibration  : a fixed-seed subset of CelebA-299 (2 photos each of 75 people) + AAF-8k (150)
      verification : other CelebA-299 people and AAF-8k photos, disjoint from calibration
      impostors    : AAF-8k photos of different people (no two photos of one person), disjoint from
                     calibration, for thresholds at FAR 1e-4 (LFW-dev has only 1,500 impostor pairs)
    `--calib DIR` replaces the calibration set with the user's own folder of face photos;
  * training_faces / align_folder: crops of the shared *training* sets (CelebA-299, AAF-8k),
    cached as plain uint8 .npy plus a JSON list of source files (no pickle);
  * Detections / detect_all / aligned_crops: every image's face record through the landmark
    cache, the no-face fallback rule, and the crops of a card's template (what PairSet uses).
Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import paths
from ..core.align import align_face
from ..core.cache import cache_dir
from ..core.card import ModelCard
from .datasets import IMAGE_SUFFIXES, identity_folder
from ..core.imageio import ImageError, read_image
from ..core.landmarks import FaceRecord, LandmarkStore
from ..core.progress import progress


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


@dataclass
class AlignedFaces:
    crops: np.ndarray  # (N, H, W, 3) uint8 RGB aligned
    paths: list[str]
    identities: list[str]  # "" where unknown
    landmarks: np.ndarray | None = None  # (N, 5, 2) the detector's landmarks in the original photos

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, idx) -> "AlignedFaces":
        idx = list(idx)
        return AlignedFaces(self.crops[idx], [self.paths[i] for i in idx], [self.identities[i] for i in idx],
                            None if self.landmarks is None else self.landmarks[idx])


def align_files(files: list[str], card: ModelCard, identities: list[str] | None = None, store: LandmarkStore | None = None,
                show_progress: bool = True, limit: int | None = None) -> AlignedFaces:
    """Detect + align; photos without a detectable face are skipped (not guessed)."""
    store = store or LandmarkStore.default()
    crops, kept, ids, lms = [], [], [], []
    try:
        for i, f in enumerate(progress(files, len(files), "align", show_progress)):
            if limit is not None and len(kept) >= limit:
                break
            rec = store.get(f)
            if rec.status != "ok":
                continue
            try:
                img = read_image(f).pixels
            except ImageError:
                continue
            crops.append(align_face(img, rec.landmarks, card.template, card.input_size))
            kept.append(f)
            ids.append(identities[i] if identities else "")
            lms.append(np.asarray(rec.landmarks, np.float64).reshape(5, 2))
    finally:
        store.flush()
    h, w = card.input_size
    arr = np.stack(crops) if crops else np.zeros((0, h, w, 3), np.uint8)
    return AlignedFaces(arr, kept, ids, np.stack(lms) if lms else np.zeros((0, 5, 2)))


def folder_faces(folder: str | Path, card: ModelCard, limit: int = 300, seed: int = 0, show_progress: bool = True) -> AlignedFaces:
    """Calibration faces from a user's folder of photos (searched recursively)."""
    folder = Path(folder)
    files = list_images(folder, "calibration")
    rng = np.random.default_rng(seed)
    files = [files[i] for i in rng.permutation(len(files))]
    ids = [Path(f).parent.name if Path(f).parent != folder else "" for f in files]
    faces = align_files(files, card, ids, show_progress=show_progress, limit=limit)
    if len(faces) < 8:
        raise ValueError(f"{folder}: only {len(faces)} photos had a detectable face; calibration needs at least 8 (ideally 300)")
    return faces


@dataclass
class DefaultSplit:
    calib_files: list[str]
    calib_ids: list[str]
    verify_files: list[str]
    verify_ids: list[str]
    impostor_files: list[str]


def default_split(n_calib: int = 300, n_verify: int = 200, n_impostor: int = 2000, seed: int = 0) -> DefaultSplit:
    """Fixed-seed, disjoint file lists from CelebA-299 and AAF-8k (half of each set from each)."""
    shared = paths.shared_dir() / "datasets"
    celeba = identity_folder(shared / "celeba-299", min_images=2)
    by_id: dict[str, list[str]] = {}
    for f, ident in celeba:
        by_id.setdefault(ident, []).append(f)
    aaf_root = shared / "aaf-8k" / "images"
    if not aaf_root.is_dir():
        raise FileNotFoundError(f"{aaf_root}: AAF-8k not found (needed for default calibration); pass --calib DIR")
    aaf = sorted(str(p) for p in aaf_root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    rng = np.random.default_rng(seed)
    people = sorted(by_id)
    people = [people[i] for i in rng.permutation(len(people))]
    aaf = [aaf[i] for i in rng.permutation(len(aaf))]
    n_cal_people = n_calib // 4  # 2 photos each -> half the calibration set from CelebA
    n_ver_people = n_verify // 4

    def two_each(ids):
        files, labels = [], []
        for ident in ids:
            pick = sorted(by_id[ident])
            sel = [pick[i] for i in rng.permutation(len(pick))[:2]]
            files += sel
            labels += [ident] * len(sel)
        return files, labels

    cf, ci = two_each(people[:n_cal_people])
    vf, vi = two_each(people[n_cal_people : n_cal_people + n_ver_people])
    n_aaf_cal = n_calib - len(cf)
    n_aaf_ver = n_verify - len(vf)
    cal_aaf = aaf[:n_aaf_cal]
    ver_aaf = aaf[n_aaf_cal : n_aaf_cal + n_aaf_ver]
    imp_aaf = aaf[n_aaf_cal : n_aaf_cal + n_impostor]  # verification photos may be impostors too; calibration photos never
    return DefaultSplit(cf + cal_aaf, ci + [""] * len(cal_aaf), vf + ver_aaf, vi + [""] * len(ver_aaf), imp_aaf)


THRESHOLD_CALIBRATION = (
    "people disjoint from every set the kit reports on (LFW-dev pairs, CFP), balanced by source (a third of the photos each): "
    "genuine pairs = all same-person pairs among {celeba_images} photos of {celeba_people} CelebA-299 people (fixed seed); impostor "
    "pairs = all pairs of different people among those, {lfw_images} photos of the {lfw_people} LFW-dev extra identities (people in "
    "no LFW-dev pair) and {aaf_images} AAF-8k photos (one person each; mostly East-Asian, all ages). The sources stand in for "
    "populations: thresholds.by_source holds each one's FAR curve and the FAR each threshold gives it"
)


@dataclass
class CalibrationPopulation:
    files: list[str]
    identities: list[str]  # "celeba:<id>", "lfw:<name>", "aaf:<file>": one namespace per source
    description: str


def threshold_calibration_population(n_faces: int = 4000, seed: int = 0, per_person: int = 10) -> CalibrationPopulation:
    """The people the bundle's FAR thresholds are calibrated on, so that the FAR / TAR reported on
    LFW-dev and CFP are measured on people the thresholds never saw (fixed seed, from ../shared):
    about n_faces photos, balanced by source: a third CelebA-299 (per_person each), a third LFW-dev
    extra identities, a third AAF-8k. (Until 2026-12-08 half were AAF-8k, whose within-source
    impostors score highest under the dlib-derived models, so one population set the threshold: the
    default's FAR-1e-3 threshold accepted 31 % of LFW-dev's genuine pairs.) 4,000 give ~5,000 genuine
    and ~8 million impostor pairs (FAR 1e-4: ~800 impostors above the threshold)."""
    n_celeba_people, n_lfw_extra, n_aaf = max(2, n_faces // (3 * per_person)), n_faces // 3, n_faces // 3
    shared = paths.shared_dir() / "datasets"
    rng = np.random.default_rng(seed)
    by_id: dict[str, list[str]] = {}
    for f, ident in identity_folder(shared / "celeba-299", min_images=2):
        by_id.setdefault(ident, []).append(f)
    people = sorted(by_id)
    people = [people[i] for i in rng.permutation(len(people))[:n_celeba_people]]
    files, ids = [], []
    for ident in people:
        pick = sorted(by_id[ident])
        pick = [pick[i] for i in sorted(rng.permutation(len(pick))[:per_person])]
        files += pick
        ids += [f"celeba:{ident}"] * len(pick)
    n_celeba = len(files)
    lfw_items = lfw_extra_items()
    lfw_items = [lfw_items[i] for i in sorted(rng.permutation(len(lfw_items))[:n_lfw_extra])]
    files += [f for f, _ in lfw_items]
    ids += [f"lfw:{name}" for _, name in lfw_items]
    aaf = sorted(str(p) for p in (shared / "aaf-8k" / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    aaf = [aaf[i] for i in sorted(rng.permutation(len(aaf))[:n_aaf])]
    files += aaf
    ids += [f"aaf:{Path(f).name}" for f in aaf]
    desc = THRESHOLD_CALIBRATION.format(celeba_images=n_celeba, celeba_people=len(people), lfw_images=len(lfw_items),
                                        lfw_people=len({n for _, n in lfw_items}), aaf_images=len(aaf))
    return CalibrationPopulation(files, ids, desc)


TRAIN_SOURCES = ("celeba-299", "aaf-8k")
# LFW images of the people in no View-2 pair (lfw-dev's extra_identities.txt): the one part of LFW
# that may be trained on. Opt-in, because it is a different population from the default sources.
LFW_EXTRA = "lfw-dev-extra"


def lfw_extra_items() -> list[tuple[str, str]]:
    """(image, person) of LFW-dev's extra identities: the people in no pair of folds 1-5."""
    lfw = paths.shared_dir() / "datasets" / "lfw-dev"
    return identity_folder(lfw, identities=set((lfw / "extra_identities.txt").read_text().split()))


def lfw_extra_files() -> list[str]:
    """The images of LFW-dev's extra identities, sorted."""
    return sorted(f for f, _ in lfw_extra_items())


def crop_card(template: str = "arcface_112x112", size: tuple[int, int] = (112, 112)) -> ModelCard:
    """A card that only says how to crop (template, size): for faces aligned before a model exists
    (the training monitor's LFW-dev pairs)."""
    return ModelCard(name="crop", arch="none", input_size=tuple(size), embedding_size=1, template=template)


def list_images(root: str | os.PathLike, purpose: str = "") -> list[str]:
    """Every image file below `root` (recursively), sorted; `purpose` names the folder in the errors."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {purpose or 'image'} folder not found")
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found" + (f" for {purpose}" if purpose else ""))
    return files


def save_atomic(path: Path, arr: np.ndarray) -> None:
    """np.save to a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")  # per process: two writers of one cache file never share a temporary
    np.save(tmp, arr, allow_pickle=False)
    os.replace(tmp, path)


def align_folder(root: str | os.PathLike, card: ModelCard, limit: int | None = None, seed: int = 0, show_progress: bool = True) -> np.ndarray:
    """Aligned (N, H, W, 3) uint8 crops of up to `limit` images (a seeded random subset) of a folder.

    Images where YuNet finds no face are skipped (a calibration/distillation set needs faces,
    not a failure rule). Cached under cache_dir('crops') keyed by folder, template and size.
    """
    root = Path(root).resolve()
    root_id = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return align_files_cached(list_images(root), f"{'-'.join(root.parts[-2:])}-{root_id}", card, limit, seed, show_progress,
                              what=str(root))


def align_files_cached(files: list[str], name: str, card: ModelCard, limit: int | None = None, seed: int = 0, show_progress: bool = True,
                       what: str = "") -> np.ndarray:
    """`align_folder` for a list of files that `name` identifies (the cache key's prefix)."""
    if limit and limit < len(files):
        idx = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files = [files[i] for i in idx]
    h, w = card.input_size
    key = f"{name}-{card.template}-{h}x{w}-n{len(files)}-s{seed}"
    out = cache_dir("crops") / f"{key}.npy"
    if out.is_file():
        arr = np.load(out, allow_pickle=False)
        if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[1:] == (h, w, 3):
            return arr
    faceset = align_files(files, card, store=LandmarkStore.default(), show_progress=show_progress)
    if not faceset.paths:
        raise ValueError(f"{what or name}: YuNet found no face in any of {len(files)} images")
    crops, used = faceset.crops, faceset.paths
    arr = crops.astype(np.uint8)
    save_atomic(out, arr)
    out.with_suffix(".json").write_text(json.dumps({"files": used}))
    return arr


def training_faces(card: ModelCard, per_source: int = 1000, seed: int = 0, sources=TRAIN_SOURCES, show_progress: bool = True) -> np.ndarray:
    """Aligned crops from the shared training sets, `per_source` from each, interleaved. LFW only as
    the source `LFW_EXTRA` (its people in no evaluation pair), never by default."""
    parts = [align_files_cached(lfw_extra_files(), LFW_EXTRA, card, per_source, seed, show_progress) if s == LFW_EXTRA
             else align_folder(paths.shared_dir() / "datasets" / s / "images", card, per_source, seed, show_progress) for s in sources]
    n = min(len(p) for p in parts)
    # Interleave so any prefix mixes the sources (CelebA in-the-wild + AAF East-Asian/ages).
    mixed = np.stack([p[:n] for p in parts], 1).reshape(-1, *parts[0].shape[1:])
    rest = [p[n:] for p in parts]
    return np.concatenate([mixed, *rest])
