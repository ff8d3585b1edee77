"""Detect-once landmark store: a JSON cache keyed by file path, size and mtime.

Re-running an evaluation (or evaluating another model on the same data) re-uses the
detections. The cache is keyed by the detector's file hash and settings, so changing the
detector never returns stale landmarks. It is plain JSON (no pickle) written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detect import YuNetDetector, pick_primary
from .imageio import ImageError, read_image
from .cache import cache_dir


@dataclass
class FaceRecord:
    path: str
    status: str  # "ok", "no_face", or an ImageError reason (missing, unreadable, tiny, ...)
    landmarks: np.ndarray | None = None  # (5, 2)
    score: float | None = None
    n_faces: int = 0
    image_size: tuple[int, int] | None = None  # (h, w)
    notes: tuple[str, ...] = ()
    detail: str = ""


def _file_key(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


class LandmarkStore:
    def __init__(self, detector: YuNetDetector, cache_file: str | os.PathLike | None):
        self.detector = detector
        self.cache_file = Path(cache_file) if cache_file else None
        self._data: dict[str, dict] = {}
        self._dirty = 0
        if self.cache_file and self.cache_file.is_file():
            try:
                self._data = json.loads(self.cache_file.read_text())
            except (json.JSONDecodeError, OSError):
                self._data = {}  # a corrupt cache is only a cache: re-detect

    @classmethod
    def default(cls, detector_path: str | os.PathLike | None = None) -> "LandmarkStore":
        """The kit's store: YuNet (the shared model unless `detector_path`) with its cache file."""
        from . import paths

        detector = YuNetDetector(detector_path or paths.yunet_model())
        return cls(detector, cls.default_cache_file(detector))

    @staticmethod
    def default_cache_file(detector: YuNetDetector) -> Path:
        h = hashlib.sha256(Path(detector.model_path).read_bytes()).hexdigest()[:12]
        return cache_dir("landmarks") / f"yunet-{h}-s{detector.score_threshold:g}-n{detector.nms_threshold:g}.json"

    def get(self, path: str) -> FaceRecord:
        path = os.path.realpath(path)
        try:
            key = _file_key(path)
        except OSError:
            return FaceRecord(path, "missing", detail="no such file")
        hit = self._data.get(path)
        if hit and hit.get("key") == key:
            return self._record(path, hit)
        try:
            img = read_image(path)
        except ImageError as exc:
            return FaceRecord(path, exc.reason, detail=exc.detail)
        dets = self.detector.detect(img.pixels)
        det = pick_primary(dets, img.pixels.shape)
        entry = {
            "key": key,
            "status": "ok" if det else "no_face",
            "n_faces": len(dets),
            "size": list(img.pixels.shape[:2]),
            "notes": img.notes,
        }
        if det is not None:
            entry["landmarks"] = det.landmarks.round(3).tolist()
            entry["score"] = round(det.score, 5)
        self._data[path] = entry
        self._dirty += 1
        if self._dirty >= 500:
            self.flush()
        return self._record(path, entry)

    @staticmethod
    def _record(path: str, e: dict) -> FaceRecord:
        lm = np.asarray(e["landmarks"], dtype=np.float64) if "landmarks" in e else None
        return FaceRecord(path, e["status"], lm, e.get("score"), e.get("n_faces", 0), tuple(e.get("size", ())) or None, tuple(e.get("notes", ())))

    def flush(self) -> None:
        if not self.cache_file or not self._dirty:
            return
        tmp = self.cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data))
        os.replace(tmp, self.cache_file)
        self._dirty = 0
