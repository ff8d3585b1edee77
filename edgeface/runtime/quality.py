"""Quality gate: decide whether a face is good enough to enrol or to match, and say why.

Every check reports its measured value, its threshold and pass/fail, so an app can tell
the user "move closer" or "too dark" instead of silently storing a bad template.

Checks (all on data the runtime already has — the aligned crop, the 5 landmarks, the
detector score, the embedding):

- interocular: distance between the eyes in the original image, pixels (face size). Below
  ~20 px the face was up-sampled into the crop and identity detail is gone.
- face_size: the detector box's shorter side, pixels (only when a detector box is known).
- sharpness: variance of the 4-neighbour Laplacian of the grey aligned crop (blur, motion).
- brightness: mean grey level of the central face region of the crop (under/over exposure).
- contrast: standard deviation of the grey level there (flat, washed-out or one-sided light).
- yaw / pitch / roll: degrees, from edgeface.core.align.estimate_pose on the 5 landmarks. Roll
  is undone by alignment, so its limit is loose; yaw and pitch are not undone.
- landmark_residual: how far the 5 landmarks are from the shape of a face: the RMS residual of
  the least-squares similarity fit of the landmarks onto the bundle's alignment template,
  divided by the template's inter-ocular distance (edgeface.core.align.landmark_residual). With the
  app's own landmarks nothing else checks that they describe a face: swapped eyes / mouth,
  mirrored, collinear or wildly disproportionate points score 0.4-0.65 where real faces stay
  below ~0.25 (the fit cannot reflect, so a mirrored configuration cannot fit).
- detector_score: the detector's confidence, when the caller has one.
- flip_similarity: cosine between the embeddings of the crop and of its mirror image. Why
  this embedding-based score: bundles return L2-normalised embeddings, so the pre-norm
  magnitude (MagFace-style quality) is not available; a mean-face embedding would need a
  per-model reference set shipped in every bundle. A frontal, well-lit, unoccluded face
  gives nearly the same embedding mirrored (faces are near-symmetric), while profiles,
  occlusions, side lighting, misaligned crops and non-faces do not: the score measures how
  stable the model's own answer is for this crop, for any model, at the cost of one extra
  embedding. It is also the per-image weight when several images make one template.

Thresholds: DEFAULT_THRESHOLDS below, overridden by the bundle's `quality` section
(either {"verify": {...}, "enroll": {...}} or a flat dict of verification thresholds,
with enrolment kept at least as strict; see merge_thresholds).
"enroll" is stricter than "verify": a template is used for every future match, so it must
be the best available image, while a probe can only be retried.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.align import estimate_pose, landmark_residual

MODES = ("verify", "enroll")

# (check, kind, threshold): kind "min" passes when value >= threshold, "max" when value <= threshold.
# Values chosen from the spread of these measures on 400 CelebA-299 training photos with the
# reference MobileFaceNet (1st percentiles: interocular 21 px, face box 60 px, sharpness 36,
# brightness 69, contrast 22, detector score 0.89, flip similarity 0.87; benchmarks/
# runtime_quality.py prints them): "verify" rejects well under 1 % of such photos,
# "enroll" a few percent. Sharpness limits are set by blurring crops: a Gaussian blur of
# sigma 1.5 px (on the 112 px crop) brings the median Laplacian variance to ~15, sigma 1 to
# ~32, so "verify" (12) refuses blur beyond ~1.5 px and "enroll" (25) beyond ~1 px.
# Not tuned on LFW-dev accuracy, which is evaluation data.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "verify": {
        "min_interocular": 16.0,
        "min_face_size": 40.0,
        "min_sharpness": 12.0,
        "min_brightness": 35.0,
        "max_brightness": 225.0,
        "min_contrast": 18.0,
        "max_abs_yaw": 45.0,
        "max_abs_pitch": 35.0,
        "max_abs_roll": 40.0,
        "min_detector_score": 0.6,
        "min_flip_similarity": 0.80,
        "max_nonface_margin": 0.0,
        "max_landmark_residual": 0.25,
    },
    "enroll": {
        "min_interocular": 24.0,
        "min_face_size": 56.0,
        "min_sharpness": 25.0,
        "min_brightness": 50.0,
        "max_brightness": 210.0,
        "min_contrast": 22.0,
        "max_abs_yaw": 30.0,
        "max_abs_pitch": 25.0,
        "max_abs_roll": 30.0,
        "min_detector_score": 0.8,
        "min_flip_similarity": 0.88,
        "max_nonface_margin": 0.0,
        "max_landmark_residual": 0.21,
    },
}

# Flip similarity depends on the model (its scale differs between embedders), so an export
# replaces the two min_flip_similarity defaults above by percentiles of the exported model's
# own flip similarity over the calibration faces (calibrate_flip_thresholds). Which percentiles
# was decided on CelebA-299 pairs, training data (benchmarks/runtime_quality.py --parts celeba,
# reference MobileFaceNet, 72k genuine + 72k impostor pairs, best-accuracy threshold): refusing
# photos below the 5th percentile rejected 9.5 % of pairs holding 30.7 % of the errors (error
# rate 14.1 % rejected vs 3.4 % accepted); the 10th percentile 18.3 % of pairs, 42.4 % of errors.
FLIP_PERCENTILES: dict[str, float] = {"verify": 5.0, "enroll": 10.0}
MIN_FACES_TO_CALIBRATE = 50


def calibrate_flip_thresholds(flip_values, percentiles: dict[str, float] | None = None) -> dict[str, float]:
    """{mode: min_flip_similarity}: the given percentiles (default FLIP_PERCENTILES) of a
    model's flip similarity over calibration faces (NaNs ignored)."""
    v = np.asarray(flip_values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) < MIN_FACES_TO_CALIBRATE:
        raise ValueError(f"calibrating the flip-similarity threshold needs at least {MIN_FACES_TO_CALIBRATE} faces, got {len(v)}")
    pct = percentiles or FLIP_PERCENTILES
    unknown = set(pct) - set(MODES)
    if unknown:
        raise ValueError(f"flip percentiles for unknown modes {sorted(unknown)}; modes: {MODES}")
    return {mode: round(float(np.percentile(v, p)), 4) for mode, p in pct.items()}


# Landmark geometry depends on the template and on the detector's landmark convention, not on the
# model, so the export sets max_landmark_residual from YuNet's landmarks on the calibration faces:
# (percentile, factor) per mode. Chosen on the export's CelebA-299 + AAF-8k calibration faces
# (300, seed 0: 99th / 99.5th percentiles 0.184 / 0.205 on arcface_112x112, 0.192 / 0.219 on
# dlib_150x150), not on LFW-dev: verify = 1.2 x the 99.5th percentile, enroll = 1.1 x the 99th.
# The defaults above (0.25 / 0.21) are these values rounded, for bundles exported without them.
LANDMARK_PERCENTILES: dict[str, tuple[float, float]] = {"verify": (99.5, 1.2), "enroll": (99.0, 1.1)}


def calibrate_landmark_thresholds(residuals, rule: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """{mode: max_landmark_residual}: factor x percentile of real faces' landmark residuals."""
    v = np.asarray(residuals, np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) < MIN_FACES_TO_CALIBRATE:
        raise ValueError(f"calibrating the landmark-residual threshold needs at least {MIN_FACES_TO_CALIBRATE} faces, got {len(v)}")
    rule = rule or LANDMARK_PERCENTILES
    return {mode: round(min(1.0, float(np.percentile(v, p)) * f), 4) for mode, (p, f) in rule.items()}


# measurement name -> (threshold key, kind, message when it fails)
_CHECKS: list[tuple[str, str, str, str]] = [
    ("interocular", "min_interocular", "min", "face too small (eyes {v:.0f} px apart, need {t:.0f}): move closer or use a larger image"),
    ("face_size", "min_face_size", "min", "face box too small ({v:.0f} px, need {t:.0f})"),
    ("sharpness", "min_sharpness", "min", "image too blurred (Laplacian variance {v:.1f} < {t:.1f})"),
    ("brightness", "min_brightness", "min", "too dark (mean level {v:.0f} < {t:.0f})"),
    ("brightness", "max_brightness", "max", "over-exposed (mean level {v:.0f} > {t:.0f})"),
    ("contrast", "min_contrast", "min", "too little contrast (std {v:.1f} < {t:.1f})"),
    ("abs_yaw", "max_abs_yaw", "max", "head turned too far sideways (yaw {v:.0f}° > {t:.0f}°)"),
    ("abs_pitch", "max_abs_pitch", "max", "head tilted too far up/down (pitch {v:.0f}° > {t:.0f}°)"),
    ("abs_roll", "max_abs_roll", "max", "head rotated too far (roll {v:.0f}° > {t:.0f}°)"),
    ("landmark_residual", "max_landmark_residual", "max", "landmarks do not have the shape of a face (residual {v:.3f} of the fit onto the "
                                                          "template > {t:.3f}: swapped, mirrored or misplaced points)"),
    ("detector_score", "min_detector_score", "min", "detector unsure this is a face (score {v:.2f} < {t:.2f})"),
    ("flip_similarity", "min_flip_similarity", "min", "unstable embedding: face and its mirror image disagree (cosine {v:.2f} < {t:.2f}; occlusion, pose or lighting)"),
    ("nonface_margin", "max_nonface_margin", "max", "not a face: the embedding lies with those of noise / blank / texture crops "
                                                    "(margin {v:+.3f} over the calibrated limit)"),
]


@dataclass
class Check:
    name: str
    value: float
    threshold: float
    kind: str  # "min" or "max"
    passed: bool
    message: str = ""  # why it failed; empty when it passed


@dataclass
class QualityReport:
    mode: str
    checks: list[Check]
    measurements: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list[str]:
        return [c.message for c in self.failed]

    @property
    def weight(self) -> float:
        """Weight of this image in a multi-image template: its flip-consistency, floored."""
        fs = self.measurements.get("flip_similarity")
        return float(np.clip(fs, 0.05, 1.0)) if fs is not None and np.isfinite(fs) else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "passed": self.passed,
            "reasons": self.reasons,
            "weight": self.weight,
            "checks": [asdict(c) for c in self.checks],
        }


# Names the bundle writer (edgeface.export) uses for the same thresholds.
ALIASES = {
    "min_detection_score": "min_detector_score",
    "min_interocular_px": "min_interocular",
    "min_face_size_px": "min_face_size",
    "max_abs_yaw_deg": "max_abs_yaw",
    "max_abs_pitch_deg": "max_abs_pitch",
    "max_abs_roll_deg": "max_abs_roll",
}
_INFO_KEYS = {"source", "notes", "description", "nonface"}  # provenance and the non-face prototypes, not thresholds


def _stricter(key: str, a: float, b: float) -> float:
    return max(a, b) if key.startswith("min_") else min(a, b)


def merge_thresholds(overrides: dict | None) -> dict[str, dict[str, float]]:
    """Defaults updated with a bundle's quality section.

    Either {"verify": {...}, "enroll": {...}} (each mode set explicitly), or a flat dict:
    its values become the "verify" thresholds and "enroll" keeps whichever of its default
    and that value is stricter (enrolment is never looser than verification). Unknown keys
    are an error (a typo would otherwise silently disable a check).
    """
    out = {m: dict(v) for m, v in DEFAULT_THRESHOLDS.items()}
    if not overrides:
        return out
    known = set(DEFAULT_THRESHOLDS["verify"])

    def clean(d: dict, where: str) -> dict[str, float]:
        res = {}
        for k, v in d.items():
            if k in _INFO_KEYS or k in MODES:
                continue
            key = ALIASES.get(k, k)
            if key not in known:
                raise ValueError(f"quality thresholds ({where}): unknown key {k!r}; known: {sorted(known | set(ALIASES))}")
            try:
                res[key] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"quality thresholds ({where}): {k!r} must be a number, got {v!r}") from None
        return res

    flat = clean(overrides, "flat")
    for k, v in flat.items():
        out["verify"][k] = v
        out["enroll"][k] = _stricter(k, out["enroll"][k], v)
    for mode in MODES:
        if isinstance(overrides.get(mode), dict):
            out[mode].update(clean(overrides[mode], mode))
    return out


def _gray(crop: np.ndarray) -> np.ndarray:
    c = np.asarray(crop, dtype=np.float32)
    if c.ndim == 3:
        c = c[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return c


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (the classic focus measure, Pech-Pacheco 2000)."""
    g = np.asarray(gray, np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def central_region(crop: np.ndarray) -> np.ndarray:
    """The inner face (eyes to mouth, cheek to cheek) of an aligned crop: excludes the
    background and hair that fill the crop's borders and would bias exposure measures."""
    h, w = crop.shape[:2]
    return crop[int(0.3 * h) : int(0.9 * h), int(0.2 * w) : int(0.8 * w)]


def measure(
    crop: np.ndarray,
    landmarks: np.ndarray,
    detector_score: float | None = None,
    box: np.ndarray | None = None,
    flip_similarity: float | None = None,
    nonface_margin: float | None = None,
    template: np.ndarray | None = None,
) -> dict[str, float]:
    """All measurements for one face. crop: aligned uint8 (H, W, 3); landmarks: (5, 2) in
    the original image; template: the bundle's 5 alignment points in crop pixels (the
    manifest's alignment.landmarks), for landmark_residual."""
    pose = estimate_pose(landmarks)
    gray = _gray(crop)
    inner = central_region(gray)
    m = {
        "interocular": pose["interocular"],
        "sharpness": laplacian_variance(gray),
        "brightness": float(inner.mean()),
        "contrast": float(inner.std()),
        "yaw": pose["yaw"],
        "pitch": pose["pitch"],
        "roll": pose["roll"],
        "abs_yaw": abs(pose["yaw"]),
        "abs_pitch": abs(pose["pitch"]),
        "abs_roll": abs(pose["roll"]),
    }
    if template is not None:
        m["landmark_residual"] = landmark_residual(landmarks, template)
    if box is not None:
        b = np.asarray(box, np.float64).reshape(-1)
        m["face_size"] = float(min(b[2] - b[0], b[3] - b[1]))
    if detector_score is not None:
        m["detector_score"] = float(detector_score)
    if flip_similarity is not None:
        m["flip_similarity"] = float(flip_similarity)
    if nonface_margin is not None:
        m["nonface_margin"] = float(nonface_margin)
    return m


# -- non-face evidence ----------------------------------------------------------------
# With the app's own landmarks no detector vouches for a face: issue 20 enrolled random noise
# and matched other noise to it at 0.983 (flip similarity scores noise 0.975-0.992, higher than
# faces; the embedder maps all noise to nearly one vector). The export therefore embeds
# synthetic non-face crops of a few families, keeps one prototype (mean direction) per family
# and, per prototype, a limit just above the highest similarity any calibration FACE reaches;
# the runtime rejects a crop whose embedding exceeds a limit ("nonface_margin" > 0).
NONFACE_FAMILIES = ("uniform_noise", "smooth_noise", "flat", "gratings")
NONFACE_MARGIN = 0.02  # above the most non-face-like calibration face


def nonface_crops(size: tuple[int, int], per_family: int = 24, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """(N, H, W, 3) uint8 synthetic non-faces and their families (NONFACE_FAMILIES): uniform
    noise, blurred noise at several scales, flat colours and gradients, gratings/checkerboards."""
    h, w = size
    rng = np.random.default_rng(seed)
    crops, fams = [], []
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for k in range(per_family):
        crops.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        fams.append("uniform_noise")
        # blurred noise: box-filtered in a cumulative sum, stretched back to a full range
        r = 1 + k % 6
        x = rng.normal(size=(h + 2 * r, w + 2 * r, 3)).astype(np.float32)
        c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0), (0, 0))), 0), 1)
        s = c[2 * r + 1 :, 2 * r + 1 :] - c[: -2 * r - 1, 2 * r + 1 :] - c[2 * r + 1 :, : -2 * r - 1] + c[: -2 * r - 1, : -2 * r - 1]
        s = (s - s.min()) / max(float(s.max() - s.min()), 1e-6)
        crops.append(np.clip(s * 255, 0, 255).astype(np.uint8))
        fams.append("smooth_noise")
        a, b = rng.uniform(0, 255, 3), rng.uniform(-1.5, 1.5, 2)
        flat = a[None, None, :] + (b[0] * xx + b[1] * yy)[..., None] + rng.normal(0, 2, (h, w, 3))
        crops.append(np.clip(flat, 0, 255).astype(np.uint8))
        fams.append("flat")
        f, th, ph = rng.uniform(0.05, 0.6), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        g = np.sin(f * (np.cos(th) * xx + np.sin(th) * yy) + ph)
        if k % 2:
            g = np.sign(g * np.sin(f * (-np.sin(th) * xx + np.cos(th) * yy)))  # checkerboard
        col = rng.uniform(0, 255, (2, 3))
        crops.append(np.clip(col[0] + (col[1] - col[0]) * ((g[..., None] + 1) / 2), 0, 255).astype(np.uint8))
        fams.append("gratings")
    return np.stack(crops), fams


def calibrate_nonface(embed, face_crops: np.ndarray, seed: int = 0) -> dict:
    """The bundle's quality.nonface section: per family a prototype (unit mean embedding of its
    synthetic crops) and a limit (highest similarity of any calibration face + NONFACE_MARGIN),
    plus what share of held-out synthetic non-faces (another seed) the limits catch."""
    h, w = face_crops.shape[1:3]
    faces = np.asarray(embed(face_crops), np.float32)
    crops, fams = nonface_crops((h, w), seed=seed)
    emb = np.asarray(embed(crops), np.float32)
    held, held_fams = nonface_crops((h, w), seed=seed + 1)
    held_emb = np.asarray(embed(held), np.float32)
    protos, limits = [], []
    for fam in NONFACE_FAMILIES:
        m = emb[[i for i, f in enumerate(fams) if f == fam]].mean(0)
        p = m / max(float(np.linalg.norm(m)), 1e-10)
        protos.append(p)
        limits.append(float(min(1.0, (faces @ p).max() + NONFACE_MARGIN)))
    section = {"families": list(NONFACE_FAMILIES), "prototypes": [[round(float(v), 6) for v in p] for p in protos],
               "limits": [round(v, 6) for v in limits]}
    margins = nonface_margins(held_emb, section)
    section["held_out_caught"] = {fam: round(float(np.mean([margins[i] > 0 for i, f in enumerate(held_fams) if f == fam])), 4) for fam in NONFACE_FAMILIES}
    section["calibration_faces"] = int(len(faces))
    return section


def nonface_margins(embeddings: np.ndarray, section: dict) -> np.ndarray:
    """Per embedding: max over prototypes of (similarity - limit); > 0 means "not a face"."""
    protos = np.asarray(section["prototypes"], np.float32)
    limits = np.asarray(section["limits"], np.float32)
    e = np.asarray(embeddings, np.float32).reshape(-1, protos.shape[1])
    return (e @ protos.T - limits[None, :]).max(axis=1)


def check_nonface_section(section, dims: int) -> list[str]:
    """What is wrong with a bundle's quality.nonface section (empty list: usable)."""
    if not isinstance(section, dict):
        return ["quality.nonface: expected an object"]
    protos, limits = section.get("prototypes"), section.get("limits")
    if not isinstance(protos, list) or not isinstance(limits, list) or not protos or len(protos) != len(limits):
        return ["quality.nonface: needs 'prototypes' and 'limits' lists of the same non-zero length"]
    errs = []
    for i, (p, lim) in enumerate(zip(protos, limits)):
        ok_p = isinstance(p, list) and len(p) == dims and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in p)
        if not ok_p or abs(float(np.linalg.norm(np.asarray(p, np.float64))) - 1) > 1e-3:
            errs.append(f"quality.nonface.prototypes[{i}]: not a unit vector of {dims} finite numbers")
        if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not -1.0 <= lim <= 1.0:
            errs.append(f"quality.nonface.limits[{i}]: {lim!r} is not a similarity in [-1, 1]")
    return errs


def flip_similarity(embedder, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine between each crop's embedding and its mirror's, the crops' embeddings), in one
    batched embed call."""
    crops = np.asarray(crops)
    both = embedder.embed(np.concatenate([crops, np.ascontiguousarray(crops[:, :, ::-1])]))
    n = len(crops)
    return np.sum(both[:n] * both[n:], axis=1), both[:n]


class QualityGate:
    def __init__(self, thresholds: dict | None = None):
        self.thresholds = merge_thresholds(thresholds)

    def assess(self, measurements: dict[str, float], mode: str = "verify") -> QualityReport:
        if mode not in MODES:
            raise ValueError(f"quality mode must be one of {MODES}, got {mode!r}")
        thr = self.thresholds[mode]
        checks = []
        for name, key, kind, msg in _CHECKS:
            if name not in measurements:
                continue  # e.g. no detector score for landmarks from the app's own detector
            v, t = float(measurements[name]), thr[key]
            ok = bool(np.isfinite(v) and (v >= t if kind == "min" else v <= t))
            checks.append(Check(name, v, t, kind, ok, "" if ok else msg.format(v=v, t=t)))
        return QualityReport(mode, checks, dict(measurements))
