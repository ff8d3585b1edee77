"""Reading face images with clear, typed failures.

Every problem a real dataset has (missing file, not an image, grayscale, tiny, huge) is
either handled with a note or raised as ImageError naming the file and the reason, so an
evaluation can count it instead of crashing halfway. Uses OpenCV when present, Pillow
otherwise: the runtime may have either.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

MIN_SIDE = 24  # below this no detector finds a face, so the file is rejected
MAX_SIDE = 4096  # larger images are downscaled (detection runs at 640 px anyway)
MAX_PIXELS = 200_000_000  # refuse decompression bombs before decoding


class ImageError(ValueError):
    """An image that cannot be used, with the path and a short reason code."""

    def __init__(self, path: str, reason: str, detail: str):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {detail}")


@dataclass
class LoadedImage:
    pixels: np.ndarray  # HxWx3 uint8 in the requested colour order
    path: str
    notes: list[str] = field(default_factory=list)  # e.g. "grayscale", "downscaled"


def _decode(path: str) -> np.ndarray:
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        buf = np.fromfile(path, dtype=np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if img is None:
            raise ImageError(path, "unreadable", "not a decodable image (corrupt, truncated or another file type)")
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        if img.ndim == 3:
            img = img[:, :, ::-1]  # OpenCV decodes BGR; edgeface works in RGB internally
        return img
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(path, "huge", f"{w}x{h} pixels is over the {MAX_PIXELS:,} pixel limit")
            im = im.convert("L") if im.mode in ("L", "I;16", "I", "F", "1") else im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(path, "unreadable", f"not a decodable image ({exc.__class__.__name__})") from None


def to_uint8_rgb(img: np.ndarray, path: str = "<array>") -> tuple[np.ndarray, list[str]]:
    """Bring an decoded array to HxWx3 uint8 RGB, noting grayscale and bit-depth changes."""
    notes: list[str] = []
    if not isinstance(img, np.ndarray) or img.size == 0:
        raise ImageError(path, "empty", "the image is empty")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
            notes.append("16-bit")
        elif np.issubdtype(img.dtype, np.floating):
            if not np.all(np.isfinite(img)):
                raise ImageError(path, "invalid", "the image has NaN or infinite pixel values")
            scale = 255.0 if img.max() <= 1.0 else 1.0
            img = np.clip(img * scale, 0, 255).astype(np.uint8)
        else:
            raise ImageError(path, "invalid", f"unsupported pixel type {img.dtype}")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
        notes.append("grayscale")
    elif img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ImageError(path, "invalid", f"expected HxW, HxWx3 or HxWx4 pixels, got shape {img.shape}")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img), notes


def read_image(path: str | os.PathLike, color_order: str = "RGB") -> LoadedImage:
    """Read an image file as HxWx3 uint8 in `color_order` ("RGB" or "BGR").

    Raises ImageError with reason one of: missing, unreadable, empty, tiny, huge, invalid.
    Grayscale images are expanded to 3 channels and huge ones downscaled, with a note each.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(path, "missing", "no such file")
    if os.path.getsize(path) == 0:
        raise ImageError(path, "empty", "the file is empty (0 bytes)")
    raw = _decode(path)
    img, notes = to_uint8_rgb(raw, path)
    h, w = img.shape[:2]
    if h * w > MAX_PIXELS:
        raise ImageError(path, "huge", f"{w}x{h} pixels is over the {MAX_PIXELS:,} pixel limit")
    if min(h, w) < MIN_SIDE:
        raise ImageError(path, "tiny", f"{w}x{h} is smaller than {MIN_SIDE} px on a side: too small to hold a usable face")
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        img = resize(img, (max(1, round(h * s)), max(1, round(w * s))))
        notes.append("downscaled")
    if color_order == "BGR":
        img = np.ascontiguousarray(img[:, :, ::-1])
    elif color_order != "RGB":
        raise ValueError(f"color_order must be 'RGB' or 'BGR', got {color_order!r}")
    return LoadedImage(img, path, notes)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (h, w): OpenCV's area/linear filter when available, else a numpy bilinear."""
    h, w = size
    try:
        import cv2

        interp = cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_LINEAR
        return cv2.resize(img, (w, h), interpolation=interp)
    except ImportError:
        from .align import warp

        sx, sy = w / img.shape[1], h / img.shape[0]
        m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
        return warp(img, m, (h, w), use_opencv=False)
