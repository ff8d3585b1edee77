"""Aligned faces for calibration, parity checks and threshold calibration.

Default sets come from ../shared (never LFW-dev, which is kept for evaluation):
  calibration  : a fixed-seed subset of CelebA-299 (2 photos each of 75 people) + AAF-8k (150)
  verification : other CelebA-299 people and AAF-8k photos, disjoint from calibration
  impostors    : AAF-8k photos of different people (no two photos of one person), disjoint from
                 calibration, for thresholds at FAR 1e-4 (LFW-dev has only 1,500 impostor pairs)
`--calib DIR` replaces the calibration set with the user's own folder of face photos.
Every photo is detected (YuNet, cached) and aligned with the card's template.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..align import align_face
from ..card import ModelCard
from ..data import IMAGE_SUFFIXES, identity_folder
from ..detect import YuNetDetector
from ..imageio import ImageError, read_image
from ..landmarks import LandmarkStore
from .. import paths


@dataclass
class FaceSet:
    crops: np.ndarray  # (N, H, W, 3) uint8 RGB aligned
    paths: list[str]
    identities: list[str]  # "" where unknown
    landmarks: np.ndarray | None = None  # (N, 5, 2) the detector's landmarks in the original photos

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, idx) -> "FaceSet":
        idx = list(idx)
        return FaceSet(self.crops[idx], [self.paths[i] for i in idx], [self.identities[i] for i in idx],
                       None if self.landmarks is None else self.landmarks[idx])


def _store(detector_path: str | None = None) -> LandmarkStore:
    det = YuNetDetector(detector_path or paths.yunet_model())
    return LandmarkStore(det, LandmarkStore.default_cache_file(det))


def align_files(files: list[str], card: ModelCard, identities: list[str] | None = None, store: LandmarkStore | None = None,
                show_progress: bool = True, limit: int | None = None) -> FaceSet:
    """Detect + align; photos without a detectable face are skipped (not guessed)."""
    from ..evaluate import progress

    store = store or _store()
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
    return FaceSet(arr, kept, ids, np.stack(lms) if lms else np.zeros((0, 5, 2)))


def folder_faces(folder: str | Path, card: ModelCard, limit: int = 300, seed: int = 0, show_progress: bool = True) -> FaceSet:
    """Calibration faces from a user's folder of photos (searched recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: calibration folder not found")
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found for calibration")
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
    "people disjoint from every set the kit reports on (LFW-dev pairs, CFP): genuine pairs = all same-person pairs among "
    "{celeba_images} photos of {celeba_people} CelebA-299 people (fixed seed); impostor pairs = all pairs of different people among "
    "those, {lfw_images} photos of the {lfw_people} LFW-dev extra identities (people in no LFW-dev pair) and {aaf_images} AAF-8k photos "
    "(one person each)"
)


@dataclass
class CalibrationPopulation:
    files: list[str]
    identities: list[str]  # "celeba:<id>", "lfw:<name>", "aaf:<file>": one namespace per source
    description: str


def threshold_calibration_population(n_faces: int = 4000, seed: int = 0, per_person: int = 10) -> CalibrationPopulation:
    """The people the bundle's FAR thresholds are calibrated on, so that the FAR / TAR reported on
    LFW-dev and CFP are measured on people the thresholds never saw (fixed seed, from ../shared):
    about n_faces photos, a quarter from CelebA-299 (per_person each), a quarter LFW-dev extra
    identities, half AAF-8k. 4,000 give ~4,500 genuine and ~8 million impostor pairs (FAR 1e-4:
    ~800 impostors above the threshold)."""
    n_celeba_people, n_lfw_extra, n_aaf = max(2, n_faces // (4 * per_person)), n_faces // 4, n_faces // 2
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
    lfw = shared / "lfw-dev"
    extra = set((lfw / "extra_identities.txt").read_text().split())
    lfw_items = identity_folder(lfw, identities=extra)
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
