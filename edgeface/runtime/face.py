"""The app-facing API: enrol, compare, verify and identify faces.

    rec = FaceRecognizer.from_bundle("model.bundle", gallery="faces.db", detector="yunet.onnx")
    rec.enroll("alice", ["a1.jpg", "a2.jpg", "a3.jpg"])
    rec.verify("probe.jpg", "alice")          # -> VerifyResult(match=True, similarity=0.71, threshold=0.42, ...)
    rec.identify("probe.jpg", top_k=5)       # -> IdentifyResult(name="alice" or "unknown", candidates=[...])

Input per image: a file path or an HxWx3 uint8 array (RGB unless `color_order="BGR"`),
plus either the app's own 5 landmarks (right eye, left eye, nose, right mouth, left mouth —
the subject's right, i.e. the image's left) or a detector (edgeface.core.detect.YuNetDetector,
or a path to its ONNX model). Faces are aligned with edgeface.core.align.align_face, the same
function the evaluation uses, so the measured accuracy is the accuracy the app gets.

Bad input never crashes and never silently matches: unreadable/empty/tiny images, no face,
several faces (with multiple_faces="reject"), wrong landmark counts, NaN or out-of-image
landmarks and faces failing the quality gate come back as a `Rejection` with a reason code
and a sentence; programming errors (unknown FAR, no gallery, a gallery of another model)
raise ValueError with a message. Torch is never imported.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..core.align import align_face, check_landmarks, template_landmarks
from ..core.imageio import MIN_SIDE, ImageError, read_image, to_uint8_rgb
from .gallery import UNKNOWN, Gallery, GalleryError, Match, normalize_name, writable
from .quality import QualityGate, QualityReport, check_nonface_section, flip_similarity, measure, nonface_margins

# Several faces in one image: "primary" the largest face nearest the centre (InsightFace's rule,
# the evaluation's), "largest" the largest box, "center" the box nearest the image centre,
# "reject" refuses the image. Whichever is used, the result says how many faces were found.
MULTIPLE_FACE_POLICIES = ("primary", "largest", "center", "reject")


# Every reason a Rejection can carry (stable codes; docs/runtime.md "Bad input").
REJECTION_REASONS = ("missing", "unreadable", "empty", "tiny", "huge", "invalid", "no_face", "several_faces", "no_landmarks",
                     "bad_landmarks", "quality", "rotated")


def _with_quality(d: dict[str, Any], quality: QualityReport | None) -> dict[str, Any]:
    """`d` with the quality gate's report under "quality" when the face was gated."""
    if quality is not None:
        d["quality"] = quality.to_dict()
    return d


@dataclass
class Rejection:
    """Why an image gave no usable face. reason is a stable code, detail a sentence."""

    reason: str  # missing | unreadable | empty | tiny | huge | invalid | no_face | several_faces | bad_landmarks | quality | rotated
    detail: str
    source: str = "<array>"
    quality: QualityReport | None = None
    faces_detected: int | None = None  # faces the detector found before the image was refused (None: not detected / landmarks given)

    ok = False

    def to_dict(self) -> dict[str, Any]:
        return _with_quality({"ok": False, "source": self.source, "reason": self.reason, "detail": self.detail,
                              "faces_detected": self.faces_detected}, self.quality)


@dataclass
class Face:
    """An aligned, embedded face that passed the quality gate (or was not gated)."""

    source: str
    crop: np.ndarray
    landmarks: np.ndarray
    embedding: np.ndarray
    quality: QualityReport | None
    detector_score: float | None = None
    box: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    faces_detected: int | None = None  # faces the detector found in the image (None: the app gave landmarks)

    ok = True

    @property
    def weight(self) -> float:
        return self.quality.weight if self.quality is not None else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = {"ok": True, "source": self.source, "landmarks": np.round(self.landmarks, 2).tolist(), "notes": self.notes,
             "faces_detected": self.faces_detected}
        if self.detector_score is not None:
            d["detector_score"] = round(float(self.detector_score), 4)
        return _with_quality(d, self.quality)


@dataclass
class EnrollResult:
    name: str
    enrolled: bool
    used: list[Face]
    rejected: list[Rejection]
    quality: float = 0.0  # mean weight of the images used

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enrolled": self.enrolled,
            "images_used": len(self.used),
            "template_quality": round(self.quality, 4),
            "used": [f.to_dict() for f in self.used],
            "rejected": [r.to_dict() for r in self.rejected],
        }


@dataclass
class CompareResult:
    match: bool | None  # None when a face was rejected: no decision
    similarity: float | None
    threshold: float
    far: str
    rejected: list[Rejection] = field(default_factory=list)
    name: str | None = None  # set by verify()
    faces_detected: list[int | None] = field(default_factory=list)  # per image: faces found (several: see notes / policy)
    threshold_note: str | None = None  # how the threshold was chosen when it is not a calibrated FAR's (operating_point)

    @property
    def decision(self) -> str:
        return "rejected" if self.match is None else ("match" if self.match else "no_match")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "decision": self.decision,
            "match": self.match,
            "similarity": None if self.similarity is None else round(float(self.similarity), 6),
            "threshold": round(float(self.threshold), 6),
            "far": self.far,
            "rejected": [r.to_dict() for r in self.rejected],
            "faces_detected": self.faces_detected,
        }
        if self.name is not None:
            d["name"] = self.name
        if self.threshold_note is not None:
            d["threshold_note"] = self.threshold_note
        return d


@dataclass
class IdentifyResult:
    name: str | None  # the identity, "unknown" (open-set rejection) or None (face rejected)
    score: float | None
    threshold: float
    far: str
    candidates: list[Match]
    rejected: list[Rejection] = field(default_factory=list)
    faces_detected: int | None = None
    fpir: float | None = None  # the target FPIR the threshold was chosen for (runtime.openset), if one was asked
    gallery_size: int | None = None
    threshold_note: str | None = None  # how the threshold was chosen when it is not a calibrated FAR's (operating_point)

    @property
    def decision(self) -> str:
        if self.name is None:
            return "rejected"
        # by the score, not the name: a legacy gallery may hold someone enrolled as "unknown"
        return "identified" if self.score is not None and self.score >= self.threshold else "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "name": self.name,
            "score": None if self.score is None else round(float(self.score), 6),
            "threshold": round(float(self.threshold), 6),
            "far": self.far,
            "fpir": self.fpir,
            "gallery_size": self.gallery_size,
            "candidates": [c.to_dict() for c in self.candidates],
            "rejected": [r.to_dict() for r in self.rejected],
            "faces_detected": self.faces_detected,
            **({"threshold_note": self.threshold_note} if self.threshold_note is not None else {}),
        }



def pick_face(detections: list, image_shape: tuple[int, ...], policy: str = "primary"):
    """The face `policy` (MULTIPLE_FACE_POLICIES) selects among several detections."""
    from ..core.detect import pick_primary

    if policy in ("primary", "reject"):
        return pick_primary(detections, image_shape)
    if policy == "largest":
        return max(detections, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
    if policy == "center":
        h, w = image_shape[:2]
        return min(detections, key=lambda d: float(((d.box[0] + d.box[2]) / 2 - w / 2) ** 2 + ((d.box[1] + d.box[3]) / 2 - h / 2) ** 2))
    raise ValueError(f"multiple_faces must be one of {MULTIPLE_FACE_POLICIES}, got {policy!r}")


_TURN_HINT = {1: "turn it 90° counter-clockwise", 2: "turn it by 180°", 3: "turn it 90° clockwise"}


def _turned(detector, pixels: np.ndarray, det, src: str) -> "Rejection | None":
    """A "rotated" Rejection when, at any context size, the detector scores the face higher turned
    by 90°, 180° or 270° than as it is (edgeface.core.detect.orientation_scores): YuNet labels the
    landmarks of a sideways or upside-down face as upright, so no landmark check sees it, and such
    crops of different people match each other (issue 37). None when the face is the right way up."""
    from ..core.detect import orientation_scores

    scores = orientation_scores(detector, pixels, det)
    if all(row[1:].max() <= row[0] for row in scores):
        return None
    total = scores.sum(axis=0)
    best = int(np.argmax(total[1:])) + 1
    hint = _TURN_HINT[best]
    return Rejection("rotated", f"the face is not upright: the detector scores it {scores[:, best].max():.2f} turned by {90 * best}° against "
                                f"{scores[:, 0].max():.2f} as it is; {hint} and try again", src)


def _source_name(image) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<array>"


class FaceRecognizer:
    """Detect/align → quality gate → embed → match, over any embedder (a loaded bundle or
    anything with .card, .backend and .embed).

    thresholds: {FAR: threshold}; default the bundle's calibrated `thresholds` (for a gallery of
        a Hamming codec, the bundle's thresholds calibrated for that codec).
    far_curve: [{far, threshold}] for identify(fpir=...); default the bundle's thresholds.far_curve.
    quality: quality-gate threshold overrides; default the bundle's `quality` section.
    multiple_faces: with a detector, "primary" uses the largest, most central face (and
    notes it), "reject" refuses images with more than one face.
    embedding_quality: compute the flip-consistency score (one extra embedding per face).
    """

    def __init__(
        self,
        embedder,
        gallery: Gallery | str | os.PathLike | None = None,
        detector=None,
        thresholds: dict[str, float] | None = None,
        quality: dict | None = None,
        multiple_faces: str = "primary",
        embedding_quality: bool = True,
        gate: bool = True,
        codec: str = "float32",
        color_order: str = "RGB",
        far_curve: list[dict] | None = None,
    ):
        for attr in ("card", "backend", "embed"):
            if not hasattr(embedder, attr):
                raise TypeError(f"embedder must have .card, .backend and .embed; {type(embedder).__name__} has no .{attr}")
        if multiple_faces not in MULTIPLE_FACE_POLICIES:
            raise ValueError(f"multiple_faces must be one of {MULTIPLE_FACE_POLICIES}, got {multiple_faces!r}")
        if color_order not in ("RGB", "BGR"):
            raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
        self.embedder = embedder
        self._far_curve = far_curve  # [{far, threshold}]; default the bundle's thresholds.far_curve
        self.card = embedder.card
        self.multiple_faces = multiple_faces
        self.embedding_quality = embedding_quality
        self.gate_enabled = gate
        self.color_order = color_order
        quality_section = quality if quality is not None else getattr(embedder, "quality", None)
        self.gate = QualityGate(quality_section)
        # the alignment template in crop pixels: landmark_residual measures the fit onto it
        self.template_points = template_landmarks(self.card.template, tuple(self.card.input_size))
        # non-face prototypes calibrated at export (quality.nonface); absent in older bundles
        self.nonface = (quality_section or {}).get("nonface") if isinstance(quality_section, dict) else None
        if self.nonface is not None:
            errs = check_nonface_section(self.nonface, self.card.embedding_size)
            if errs:
                raise ValueError("; ".join(errs))
        explicit_thresholds = thresholds is not None
        self.thresholds = {str(k): float(v) for k, v in (thresholds if explicit_thresholds else (getattr(embedder, "thresholds", None) or {})).items()}
        # compare(a, b) scores cosines whatever the gallery stores
        self.cosine_thresholds = dict(self.thresholds)
        if isinstance(detector, (str, os.PathLike)):
            from ..core.detect import YuNetDetector

            detector = YuNetDetector(detector)
        self.detector = detector
        # A gallery path is opened if the file exists and created by the first enroll() only: a
        # mistyped path for verify/identify is an error, not a silently created empty gallery.
        self._gallery_to_create: tuple[str | os.PathLike, str] | None = None
        if isinstance(gallery, (str, os.PathLike)):
            if os.path.isfile(gallery) and os.path.getsize(gallery) > 0:
                # a gallery on a read-only partition or folder is searched read-only (enrol then says so)
                gallery = Gallery(gallery, card=self.card, codec=codec, readonly=not writable(gallery))
            else:
                from .codecs import get_codec

                get_codec(codec, self.card.embedding_size)  # a bad codec name fails now, not at the first enrol
                self._gallery_to_create = (gallery, codec)
                gallery = None
        elif gallery is not None:
            gallery.check_model(self.card)
        self.gallery = gallery
        from .codecs import get_codec

        codec_in_use = gallery.codec if gallery is not None else (get_codec(codec, self.card.embedding_size) if self._gallery_to_create else None)
        if codec_in_use is not None and codec_in_use.hamming_scores and not explicit_thresholds:
            # Hamming similarities are not cosines: the cosine thresholds would give a wrong FAR.
            # Use the bundle's thresholds calibrated for this codec, or refuse rather than
            # silently mis-decide.
            own = embedder.codec_thresholds(codec_in_use.name) if hasattr(embedder, "codec_thresholds") else {}
            if not own:
                where = gallery.path if gallery is not None else self._gallery_to_create[0]
                raise ValueError(
                    f"{where}: {codec_in_use.name}-codec gallery scores are Hamming similarities and the model has no thresholds "
                    "calibrated for that codec: export the bundle with this kit version, or pass thresholds= calibrated for it"
                )
            self.thresholds = own

    @classmethod
    def from_bundle(cls, path: str | os.PathLike, gallery=None, detector=None, backend: str | None = None, threads: int = 0, verify_hash: bool = True, **kwargs) -> "FaceRecognizer":
        """Load an exported bundle (edgeface.runtime.bundle.load_bundle: hash-checked) and wrap it.

        detector: a detector or a YuNet ONNX path; None uses the detector shipped in the bundle
        (`edgeface export --detector`), if any; False uses none (the app always gives landmarks)."""
        from .bundle import load_bundle  # lazy: the bundle module ships with the export side

        bundle = load_bundle(path, backend=backend, threads=threads, verify_hash=verify_hash)
        if detector is None:
            detector = bundle.detector_file  # hash-checked with every file by load_bundle
        return cls(bundle, gallery=gallery, detector=detector or None, **kwargs)

    # -- thresholds -----------------------------------------------------------------
    @staticmethod
    def far_key(far: str | float) -> str:
        """The table key of a false-accept rate: "1e-3" for "1e-3", "0.001", 0.001 or 1e-3."""
        if isinstance(far, bool) or not isinstance(far, (str, int, float)):
            raise ValueError(f"FAR must be a number such as 1e-3, got {far!r}")
        try:
            value = float(far)
        except ValueError:
            raise ValueError(f"FAR must be a number such as 1e-3 or 0.001, got {far!r}") from None
        if not 0.0 < value < 1.0:
            raise ValueError(f"FAR must be between 0 and 1 (e.g. 1e-3), got {far!r}")
        mant, exp = f"{value:.0e}".split("e")
        return f"{mant}e{int(exp)}" if abs(float(f"{mant}e{exp}") - value) <= 1e-9 * value else repr(value)

    def threshold(self, far: str | float, cosine: bool = False) -> float:
        """The decision threshold at `far` for gallery scores (in the gallery's codec), or for
        plain cosines with cosine=True (compare)."""
        key = self.far_key(far)
        table = self.cosine_thresholds if cosine else self.thresholds
        if not table:
            raise ValueError(
                f"model {self.card.name!r} has no calibrated thresholds: load an exported bundle (its edgeface.json holds them) "
                "or pass thresholds={'1e-3': ...}"
            )
        if key in table:
            return table[key]
        return self.operating_point(far=far, cosine=cosine)[0]

    def calibrated_points(self, cosine: bool = False) -> list[tuple[float, float]]:
        """(FAR, threshold) of every calibrated point for these scores: the at_far table and the
        bundle's FAR curve (thresholds.far_curve, in the gallery's codec), loosest FAR first."""
        table = self.cosine_thresholds if cosine else self.thresholds
        pts = {float(k): float(v) for k, v in table.items()}
        try:
            curve = self.far_curve(cosine=cosine)
        except ValueError:
            curve = []
        for p in curve:
            pts.setdefault(float(p["far"]), float(p["threshold"]))
        return sorted(pts.items(), key=lambda ft: -ft[0])

    def operating_point(self, far: str | float | None = None, threshold: float | None = None, cosine: bool = False) -> tuple[float, str, str | None]:
        """(threshold, FAR label, note) for a decision at `far` or at an explicit `threshold` (not both).

        A FAR calibrated in the at_far table gives its threshold and no note. Any other FAR takes the
        threshold of the next STRICTER calibrated point (the loosest one whose FAR is at most the one
        asked) among at_far and the FAR curve: the FAR achieved on the calibration population is then
        at most the one asked, never more (no interpolation between points, which could overshoot);
        the note says which point. A FAR finer than every calibrated point is refused.
        An explicit threshold is used as given; the note states the FAR the bundle's calibration
        measured for it: at most the FAR of the strictest calibrated point whose threshold it reaches."""
        k = self.far_key
        if threshold is not None:
            if far is not None:
                raise ValueError("give a FAR or an explicit threshold, not both")
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= float(threshold) <= 1.0:
                raise ValueError(f"threshold must be a similarity between -1 and 1, got {threshold!r}")
            t = float(threshold)
            pts = self.calibrated_points(cosine)
            if not pts:
                return t, "unknown", f"explicit threshold {t:.4f}; the model has no calibrated FARs to say what FAR it gives"
            reached = [f for f, ct in pts if ct <= t]
            if reached:
                f = min(reached)
                return t, f"<={k(f)}", f"explicit threshold {t:.4f}: FAR at most {k(f)} on the bundle's calibration (its threshold there is {dict(pts)[f]:.4f})"
            f, ct = pts[0]
            return t, f">{k(f)}", (f"explicit threshold {t:.4f} is below the loosest calibrated point (FAR {k(f)}, threshold {ct:.4f}): the FAR is above "
                                  f"{k(f)}, expect many false accepts")
        far = "1e-3" if far is None else far
        key = self.far_key(far)
        table = self.cosine_thresholds if cosine else self.thresholds
        if key in table:
            return table[key], key, None
        if not table:
            self.threshold(key, cosine)  # the "no calibrated thresholds" error
        want = float(key)
        pts = self.calibrated_points(cosine)
        stricter = [(f, t) for f, t in pts if f <= want * (1 + 1e-9)]
        if not stricter:
            raise ValueError(f"no threshold calibrated for FAR {key}: the finest calibrated FAR is {k(min(f for f, _ in pts))} "
                             f"(calibrated: {', '.join(k(f) for f, _ in pts)}); or pass an explicit threshold")
        f, t = max(stricter, key=lambda ft: (ft[0], ft[1]))
        return t, key, (f"FAR {key} is not a calibrated point: using the next stricter one, FAR {k(f)} (threshold {t:.4f}), so the FAR "
                        f"achieved on the calibration is at most {k(f)}")

    # -- one image → aligned crop --------------------------------------------------------
    def _load(self, image) -> np.ndarray | Rejection:
        src = _source_name(image)
        try:
            if isinstance(image, (str, os.PathLike)):
                pixels = read_image(image).pixels
            elif isinstance(image, np.ndarray):
                pixels, _ = to_uint8_rgb(image, src)
                if self.color_order == "BGR":
                    pixels = np.ascontiguousarray(pixels[:, :, ::-1])
                if min(pixels.shape[:2]) < MIN_SIDE:
                    return Rejection("tiny", f"{pixels.shape[1]}x{pixels.shape[0]} is smaller than {MIN_SIDE} px on a side", src)
            else:
                return Rejection("invalid", f"expected an image file path or an HxWx3 uint8 array, got {type(image).__name__}", src)
        except ImageError as exc:
            return Rejection(exc.reason, exc.detail, src)
        except ImportError:
            # a deployment problem, not a bad image: say what to install
            raise ValueError(
                f"{src}: reading image files needs opencv-python-headless or Pillow (pip install 'edgeface[runtime]'); "
                "or pass decoded HxWx3 uint8 arrays"
            ) from None
        return pixels

    def locate(self, image, landmarks=None, detector_score: float | None = None) -> tuple[np.ndarray, np.ndarray, float | None, np.ndarray | None, list[str]] | Rejection:
        """(pixels, landmarks (5,2), detector score, box, notes) or a Rejection."""
        src = _source_name(image)
        pixels = self._load(image)
        if isinstance(pixels, Rejection):
            return pixels
        notes: list[str] = []
        box = None
        if landmarks is not None:
            try:
                lm = check_landmarks(landmarks)
            except ValueError as exc:
                return Rejection("bad_landmarks", str(exc), src)
            h, w = pixels.shape[:2]
            eyes = lm[:2]
            if np.any(eyes < 0) or np.any(eyes[:, 0] >= w) or np.any(eyes[:, 1] >= h):
                return Rejection("bad_landmarks", f"eye landmarks {np.round(eyes, 1).tolist()} lie outside the {w}x{h} image", src)
            if np.linalg.norm(lm[1] - lm[0]) < 2.0:
                return Rejection("bad_landmarks", "the two eye landmarks coincide: not a face", src)
        else:
            if self.detector is None:
                return Rejection("no_landmarks", "no landmarks given and no detector configured (pass landmarks= or detector=)", src)
            dets = self.detector.detect(pixels)
            if not dets:
                return Rejection("no_face", "the detector found no face", src, faces_detected=0)
            if len(dets) > 1:
                if self.multiple_faces == "reject":
                    return Rejection("several_faces", f"the detector found {len(dets)} faces; expected one (multiple_faces='reject')", src,
                                     faces_detected=len(dets))
                notes.append(f"{len(dets)} faces found; used the {self.multiple_faces} one (multiple_faces={self.multiple_faces!r})")
            det = pick_face(dets, pixels.shape, self.multiple_faces)
            turned = _turned(self.detector, pixels, det, src)
            if turned is not None:
                return turned
            lm, detector_score, box = det.landmarks.astype(np.float64), det.score, det.box
            notes.append(f"faces_detected={len(dets)}")
        return pixels, lm, detector_score, box, notes

    # -- many images → faces ---------------------------------------------------------
    def analyze(self, images: Sequence, landmarks: Sequence | None = None, mode: str = "verify", detector_scores: Sequence | None = None) -> list[Face | Rejection]:
        """Align, quality-check and embed each image (one batched embed call).

        Returns, per image, a Face or a Rejection; faces failing the gate in `mode` are
        rejected with reason "quality" and the failed checks (unless gate=False).
        """
        if isinstance(images, (str, os.PathLike, np.ndarray)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
            images = [images]
        images = list(images)
        for what, seq in (("landmarks", landmarks), ("detector_scores", detector_scores)):
            if seq is not None and (isinstance(seq, (dict, str, bytes, set, frozenset)) or not hasattr(seq, "__len__") or not hasattr(seq, "__getitem__")):
                raise ValueError(f"{what}: expected one entry per image (a list), got {type(seq).__name__}")
        if landmarks is not None and len(landmarks) != len(images):
            raise ValueError(f"got {len(images)} images but {len(landmarks)} landmark sets")
        if detector_scores is not None and len(detector_scores) != len(images):
            raise ValueError(f"got {len(images)} images but {len(detector_scores)} detector scores")
        h, w = self.card.input_size
        located: list[Any] = []
        for i, img in enumerate(images):
            loc = self.locate(img, None if landmarks is None else landmarks[i], None if detector_scores is None else detector_scores[i])
            if not isinstance(loc, Rejection):
                pixels, lm, score, box, notes = loc
                try:
                    crop = align_face(pixels, lm, self.card.template, (h, w))
                except ValueError as exc:
                    loc = Rejection("bad_landmarks", f"cannot align: {exc}", _source_name(img))
                else:
                    loc = (crop, lm, score, box, notes)
            located.append(loc)
        good = [i for i, loc in enumerate(located) if not isinstance(loc, Rejection)]
        out: list[Face | Rejection] = list(located)
        if not good:
            return out
        crops = np.stack([located[i][0] for i in good])
        if self.embedding_quality:
            flip_sims, embs = flip_similarity(self.embedder, crops)
        else:
            flip_sims, embs = [None] * len(good), self.embedder.embed(crops)
        embs = np.asarray(embs, np.float32)
        if embs.shape != (len(good), self.card.embedding_size) or not np.all(np.isfinite(embs)):
            raise RuntimeError(f"embedder {self.card.name!r} returned {embs.shape} (finite: {bool(np.all(np.isfinite(embs)))}); expected ({len(good)}, {self.card.embedding_size}) finite values")
        margins = nonface_margins(embs, self.nonface) if self.nonface is not None else [None] * len(good)
        for j, i in enumerate(good):
            crop, lm, score, box, notes = located[i]
            src = _source_name(images[i])
            report = self.gate.assess(measure(crop, lm, score, box, flip_sims[j], margins[j], self.template_points), mode)
            count = [int(n.split("=")[1]) for n in notes if n.startswith("faces_detected=")]
            if self.gate_enabled and not report.passed:
                out[i] = Rejection("quality", "; ".join(report.reasons), src, report, count[0] if count else None)
            else:
                out[i] = Face(src, crop, lm, embs[j], report, score, box, [n for n in notes if not n.startswith("faces_detected=")],
                              count[0] if count else None)
        return out

    def embed_batch(self, images: Sequence, landmarks: Sequence | None = None, mode: str = "verify") -> tuple[np.ndarray, list[Face | Rejection]]:
        """(N, D) float32 embeddings (rows of NaN for rejected images) and the per-image results."""
        results = self.analyze(images, landmarks, mode)
        emb = np.full((len(results), self.card.embedding_size), np.nan, np.float32)
        for i, r in enumerate(results):
            if isinstance(r, Face):
                emb[i] = r.embedding
        return emb, results

    # -- enrol / compare / verify / identify -------------------------------------------
    def _need_gallery(self, create: bool = False) -> Gallery:
        if self.gallery is None and self._gallery_to_create is not None:
            path, codec = self._gallery_to_create
            if not create:
                raise GalleryError(f"{path}: no such gallery: enrol someone first (that creates it), or check the path")
            self.gallery = Gallery(path, card=self.card, codec=codec)
            self._gallery_to_create = None
        if self.gallery is None:
            raise ValueError("this FaceRecognizer has no gallery: pass gallery= (a path or Gallery)")
        return self.gallery

    def enroll(self, name: str, images: Sequence, landmarks: Sequence | None = None, replace: bool = True) -> EnrollResult:
        """Several images of one person → one quality-weighted template (stricter gate).

        The template is the normalised weighted mean of the accepted images' embeddings,
        each weighted by its flip-consistency (QualityReport.weight). Nothing is stored
        when no image is accepted.
        """
        name = normalize_name(name)  # before any work: a bad name is refused whatever the images
        if self.gallery is None and self._gallery_to_create is None:
            self._need_gallery()
        if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        if len(images) == 0:
            raise ValueError(f"enroll {name!r}: no images given")
        results = self.analyze(images, landmarks, mode="enroll")
        used = [r for r in results if isinstance(r, Face)]
        rejected = [r for r in results if isinstance(r, Rejection)]
        if not used:
            return EnrollResult(name, False, [], rejected)
        gallery = self._need_gallery(create=True)
        weights = np.array([f.weight for f in used], np.float64)
        template = (weights[:, None] * np.stack([f.embedding for f in used])).sum(0)
        template /= max(float(np.linalg.norm(template)), 1e-10)
        gallery.add(name, template, n_images=len(used), quality=float(weights.mean()), replace=replace)
        return EnrollResult(name, True, used, rejected, float(weights.mean()))

    def compare(self, a, b, far: str | None = None, landmarks_a=None, landmarks_b=None, threshold: float | None = None) -> CompareResult:
        """Are the faces in `a` and `b` the same person? At the calibrated threshold for `far`
        (default 1e-3), or at an explicit `threshold` (operating_point says what FAR it gives)."""
        thr, far, note = self.operating_point(far, threshold, cosine=True)
        lms = None if landmarks_a is None and landmarks_b is None else [landmarks_a, landmarks_b]
        if lms is not None and (landmarks_a is None) != (landmarks_b is None):
            raise ValueError("give landmarks for both images or for neither")
        fa, fb = self.analyze([a, b], lms, mode="verify")
        rejected = [r for r in (fa, fb) if isinstance(r, Rejection)]
        if rejected:
            return CompareResult(None, None, thr, far, rejected, faces_detected=[fa.faces_detected, fb.faces_detected], threshold_note=note)
        sim = float(np.dot(fa.embedding, fb.embedding))
        return CompareResult(sim >= thr, sim, thr, far, faces_detected=[fa.faces_detected, fb.faces_detected], threshold_note=note)

    def verify(self, image, name: str, far: str | None = None, landmarks=None, threshold: float | None = None) -> CompareResult:
        """Is this the enrolled `name`? At the calibrated threshold for `far` (default 1e-3; another
        FAR takes the next stricter calibrated point, see operating_point), or an explicit `threshold`."""
        gallery = self._need_gallery()
        thr, far, note = self.operating_point(far, threshold)
        template = gallery.template_code(name)
        if template is None:
            raise KeyError(f"{name!r} is not enrolled in {gallery.path}")
        (face,) = self.analyze([image], None if landmarks is None else [landmarks], mode="verify")
        if isinstance(face, Rejection):
            return CompareResult(None, None, thr, far, [face], name=name, faces_detected=[face.faces_detected], threshold_note=note)
        sim = float(gallery.codec.similarity(face.embedding, template)[0, 0])  # Hamming or cosine, as the codec scores
        return CompareResult(sim >= thr, sim, thr, far, name=name, faces_detected=[face.faces_detected], threshold_note=note)

    def far_curve(self, cosine: bool = False) -> list[dict]:
        """The bundle's thresholds at a grid of FARs (thresholds.far_curve), in the gallery's codec
        (plain cosines with cosine=True)."""
        if self._far_curve is not None:
            return self._far_curve
        th = (getattr(self.embedder, "meta", None) or {}).get("thresholds", {})
        if not cosine and self.gallery is not None and self.gallery.codec.hamming_scores:
            th = th.get("codecs", {}).get(self.gallery.codec.name, {})
        curve = th.get("far_curve")
        if not curve:
            raise ValueError(f"model {self.card.name!r} has no FAR curve (thresholds.far_curve): re-export the bundle with this kit version, "
                             "or choose the threshold by --far")
        return curve

    def threshold_for_fpir(self, fpir: float) -> tuple[float, float]:
        """(threshold, per-comparison FAR) giving about `fpir` false identifications of strangers
        at the gallery's current size (runtime.openset: 1 - (1 - FAR)^N = FPIR)."""
        from .openset import threshold_for_fpir

        return threshold_for_fpir(self.far_curve(), fpir, len(self._need_gallery()))

    def identify(self, image, top_k: int = 5, far: str | None = None, landmarks=None, use_index: bool | None = None, fpir: float | None = None,
                 threshold: float | None = None) -> IdentifyResult:
        """Who is this? Open set: the best match below the threshold is "unknown". The threshold is
        the bundle's for the one-to-one `far`, or, with `fpir`, the one that keeps the rate of
        strangers identified as someone near `fpir` at the gallery's current size."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a whole number >= 1, got {top_k!r}")
        gallery = self._need_gallery()
        size, note = None, None
        if fpir is not None:
            if far is not None or threshold is not None:
                raise ValueError("give one of fpir, far and threshold")
            thr, far_needed = self.threshold_for_fpir(fpir)
            far, size = f"{far_needed:.2e}", len(gallery)
        else:
            thr, far, note = self.operating_point(far, threshold)
        (face,) = self.analyze([image], None if landmarks is None else [landmarks], mode="verify")
        if isinstance(face, Rejection):
            return IdentifyResult(None, None, thr, far, [], [face], faces_detected=face.faces_detected, fpir=fpir, gallery_size=size, threshold_note=note)
        cands = gallery.search(face.embedding, top_k=top_k, use_index=use_index)[0]
        if not cands:
            return IdentifyResult(UNKNOWN, None, thr, far, [], [], faces_detected=face.faces_detected, fpir=fpir, gallery_size=size, threshold_note=note)
        best = cands[0]
        return IdentifyResult(best.name if best.score >= thr else UNKNOWN, best.score, thr, far, cands, [], faces_detected=face.faces_detected, fpir=fpir,
                              gallery_size=size, threshold_note=note)
