"""Reading face images with clear, typed failures.

Every problem a real dataset has (missing file, not an image, grayscale, tiny, huge) is
either handled with a note or raised as ImageError naming the file and the reason, so an
evaluation can count it instead of crashing halfway, and a hostile file (decompression bomb,
corrupt header, odd pixel format) costs neither a traceback nor gigabytes. The header is read
with Pillow first (size, format, EXIF orientation: no pixels), the pixel budget is enforced
then; OpenCV decodes when present (the evaluation's decoder), Pillow otherwise.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

MIN_SIDE = 24  # below this no detector finds a face, so the file is rejected
MAX_SIDE = 4096  # larger images are downscaled (detection runs at 640 px anyway)
# Pixel budget of one decoded image, checked on the header BEFORE any pixel is decoded: 25 MP
# (75 MB as RGB, 200 MB as 16-bit RGBA; a 48 MP phone photo is a JPEG and is decoded at half size). The old
# limit (200 MP, checked after decoding) let an 11000x11000 PNG of 143 KB cost 3.75 GB and
# 3 minutes before being refused (issue 20).
MAX_PIXELS = 25_000_000
MAX_FILE_BYTES = 64 << 20  # no face photo is larger; a bigger file is refused unread
# JPEG decoding work the header does not show (issue 37). A progressive JPEG (or any JPEG of several
# scans) is decoded into a buffer of the WHOLE frame's DCT coefficients, 128 bytes an 8x8 block, whatever
# reduction is asked for: a 7 KB file claiming 13000x13000 took a verify to 1.13 GB. And every scan walks
# every block of its components: a 1 MB file of 800 scans cost 46.5 s. The markers are read before
# decoding (_check_jpeg_scans) and the file refused over any of these limits. Encoders write ~10 scans
# (libjpeg's progression: 10 for colour, 6 for grey; mozjpeg a few more). 32 MB of coefficients is an
# 11-megapixel 4:2:0 (5.6-megapixel 4:4:4) progressive photo; 10 million block-scans is 10 scans of
# 1 million blocks. Set so that a whole `edgeface verify` of the worst file these limits let through
# stays under 300 MB peak RSS and 2 s CPU (64 MB / 20 M let a 68 KB file reach 326 MB and 2.1 s;
# benchmarks/imageio_bombs.py).
MAX_JPEG_SCANS = 100
MAX_JPEG_COEF_BYTES = 32 << 20
MAX_JPEG_SCAN_BLOCKS = 10_000_000
# EXIF orientation -> numpy transform of an (H, W, ...) array giving the upright image
# (the same 8 cases as Pillow's ImageOps.exif_transpose; tests/test_imageio_hostile.py checks it).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


class ImageError(ValueError):
    """An image that cannot be used, with the path and a short reason code
    (missing | unreadable | empty | tiny | huge | invalid)."""

    def __init__(self, path: str, reason: str, detail: str):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {detail}")


@dataclass
class LoadedImage:
    pixels: np.ndarray  # HxWx3 uint8 in the requested colour order
    path: str
    notes: list[str] = field(default_factory=list)  # e.g. "grayscale", "downscaled", "exif-rotated"


@dataclass
class _Header:
    width: int
    height: int
    format: str | None
    orientation: int
    reduce: int = 1
    mode: str = ""  # JPEG decoding reduction chosen by _check_budget


def _orientation(im) -> int:
    """EXIF orientation without decoding pixels. (Pillow's PNG getexif() decodes the whole image
    to look for a trailing eXIf chunk: for PNG only the chunks before the pixel data count.)"""
    from PIL import Image

    try:
        if im.format == "PNG":
            raw = im.info.get("exif")
            if not raw:
                return 1
            ex = Image.Exif()
            ex.load(raw)
        else:
            ex = im.getexif()
        value = int(ex.get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no reason to refuse the photo
        return 1
    return value if value in _ORIENT else 1


def _header(path: str) -> _Header | None:
    """Size, format and EXIF orientation from the file header (Pillow reads no pixels here), the
    pixel budget checked before the EXIF block is even parsed; None when Pillow is not
    installed or does not know the format."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own budget decides, below
            im = Image.open(path)
        with im:
            w, h = im.size
            hdr = _Header(int(w), int(h), im.format, 1, mode=im.mode)
            hdr.reduce = _check_budget(path, hdr)
            hdr.orientation = _orientation(im)
            return hdr
    except (UnidentifiedImageError, ImageError) as exc:
        if isinstance(exc, ImageError):
            raise
        return None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, "huge", f"over the pixel budget, refused before decoding ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any parser error in a header = not a usable image
        raise ImageError(path, "unreadable", f"not a decodable image ({exc.__class__.__name__})") from None


def _check_budget(path: str, hdr: _Header) -> int:
    """The JPEG reduction (1, 2, 4 or 8) that brings the image within MAX_PIXELS and, where that
    costs nothing, near MAX_SIDE; ImageError "huge" when no reduction can."""
    w, h = hdr.width, hdr.height
    if w <= 0 or h <= 0:
        raise ImageError(path, "invalid", f"header says {w}x{h} pixels")
    if min(w, h) < MIN_SIDE:
        raise ImageError(path, "tiny", f"{w}x{h} is smaller than {MIN_SIDE} px on a side: too small to hold a usable face")
    reduce = 1
    if hdr.format == "JPEG":
        # decode at 1/2, 1/4 or 1/8 (libjpeg scales in the DCT: memory and time shrink with it)
        while reduce < 8 and (w // (2 * reduce)) * (h // (2 * reduce)) and (
            (w // reduce) * (h // reduce) > MAX_PIXELS or max(w, h) // (2 * reduce) >= MAX_SIDE
        ):
            reduce *= 2
    if (w // reduce) * (h // reduce) > MAX_PIXELS:
        raise ImageError(path, "huge", f"{w}x{h} pixels is over the {MAX_PIXELS:,} pixel budget (refused before decoding)")
    return reduce


# A marker inside entropy-coded data: 0xFF then neither a stuffed 0x00, a restart marker nor a fill byte.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_SOF_OK = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
_JPEG_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic


def jpeg_structure(data: bytes) -> dict:
    """The frame and scans of a JPEG (its first image), from the markers alone: {"process", "width",
    "height", "blocks": {component id: 8x8 blocks}, "scans": [component ids of each scan]}. Entropy-
    coded data is skipped with one regular-expression search per scan. Raises ValueError for what
    libjpeg would refuse or this check cannot size (no SOI, a scan before the frame, two frames,
    lossless / hierarchical / arithmetic coding)."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no JPEG start-of-image marker")
    frame, scans, pos, n = None, [], 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:  # garbage between segments: libjpeg skips to the next marker, so do we
            m = _JPEG_MARKER.search(data, pos)
            if m is None:
                break
            pos = m.start()
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= n:
            break
        code, pos = data[pos + 1], pos + 2
        if code == 0xD9:  # end of image
            break
        if 0xD0 <= code <= 0xD7 or code in (0x01, 0x00):
            continue
        if pos + 2 > n:
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        seg, pos = data[pos + 2 : pos + length], pos + max(length, 2)
        if code in _JPEG_SOF_OTHER:
            raise ValueError(f"JPEG coding process SOF{code - 0xC0} (lossless, hierarchical or arithmetic) is not accepted: "
                             "save the photo as a baseline or progressive JPEG")
        if code in _JPEG_SOF_OK:
            if frame is not None:
                raise ValueError("two JPEG frame headers")
            if len(seg) < 6 or len(seg) < 6 + 3 * seg[5] or seg[5] == 0:
                raise ValueError("truncated JPEG frame header")
            height, width, ncomp = int.from_bytes(seg[1:3], "big"), int.from_bytes(seg[3:5], "big"), seg[5]
            comps = [(seg[6 + 3 * i], seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 15) for i in range(ncomp)]
            hmax, vmax = max(max(c[1] for c in comps), 1), max(max(c[2] for c in comps), 1)
            blocks = {cid: -(-(-(-width * h // hmax)) // 8) * -(-(-(-height * v // vmax)) // 8) for cid, h, v in comps}
            frame = {"process": _JPEG_SOF_OK[code], "width": width, "height": height, "blocks": blocks}
        elif code == 0xDA:
            if frame is None:
                raise ValueError("a JPEG scan before the frame header")
            scans.append([seg[1 + 2 * i] for i in range(seg[0]) if 1 + 2 * i < len(seg)] if seg else [])
            m = _JPEG_MARKER.search(data, pos)  # skip the scan's entropy-coded data
            pos = m.start() if m else n
    if frame is None:
        raise ValueError("no JPEG frame header")
    return {**frame, "scans": scans}


def _check_jpeg_scans(path: str) -> None:
    """Refuse, before decoding, a JPEG whose decoding would cost far more memory or time than its
    header's size shows (MAX_JPEG_SCANS, MAX_JPEG_COEF_BYTES, MAX_JPEG_SCAN_BLOCKS above)."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    try:
        js = jpeg_structure(data)
    except ValueError as exc:
        raise ImageError(path, "unreadable", f"not a usable JPEG ({exc})") from None
    scans, blocks = js["scans"], js["blocks"]
    size = f"{js['width']}x{js['height']}"
    if len(scans) > MAX_JPEG_SCANS:
        raise ImageError(path, "huge", f"{js['process']} JPEG of {len(scans)} scans (photos have about 10; limit {MAX_JPEG_SCANS}): "
                                       "refused before decoding (decompression bomb)")
    if js["process"] == "progressive" or len(scans) > 1:
        coef = 128 * sum(blocks.values())
        if coef > MAX_JPEG_COEF_BYTES:
            raise ImageError(path, "huge", f"{js['process']} JPEG of {size} in {len(scans)} scans needs {coef / 2**20:.0f} MB of DCT "
                                           f"coefficients to decode (limit {MAX_JPEG_COEF_BYTES >> 20} MB): refused before decoding "
                                           "(a decompression bomb, or save the photo smaller or as a baseline JPEG)")
    work = sum(blocks.get(cid, 0) for scan in scans for cid in scan)
    if work > MAX_JPEG_SCAN_BLOCKS:
        raise ImageError(path, "huge", f"{js['process']} JPEG of {size} in {len(scans)} scans walks {work:,} blocks to decode "
                                       f"(limit {MAX_JPEG_SCAN_BLOCKS:,}): refused before decoding (decompression bomb)")


def _decode_pillow(path: str, hdr: _Header | None, reduce: int) -> np.ndarray:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path)
    with im:
        if reduce > 1:
            im.draft("RGB", (hdr.width // reduce, hdr.height // reduce))
        im.load()
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            a = np.asarray(im)
            if a.dtype.kind in "iu" and (a.min() < 0 or a.max() > 65535):
                raise ImageError(path, "invalid", f"{mode} image with values outside 0-65535")
            return a.astype(np.uint16)  # 16-bit grey: to_uint8_rgb keeps the top 8 bits
        if mode == "F":
            return np.asarray(im, np.float32)
        if mode in ("1", "L"):
            return np.asarray(im.convert("L"))
        return np.asarray(im.convert("RGB"))  # P, PA, LA, RGBA, CMYK, YCbCr, LAB, HSV...


def _decode_opencv(path: str, hdr: _Header | None) -> np.ndarray | None:
    """OpenCV's decoding, 8 bits per channel whenever the header is known (grey stays grey):
    a 16-bit RGBA PNG would otherwise cost 8 bytes a pixel before any conversion. EXIF
    orientation is never applied here (it is applied below, once, for every decoder)."""
    try:
        import cv2
    except ImportError:
        return None
    if hdr is None:
        flags = cv2.IMREAD_UNCHANGED
    elif hdr.mode in _GREY_MODES:
        flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION
    else:
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    buf = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise ImageError(path, "unreadable", "not a decodable image (corrupt, truncated or another file type)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # OpenCV decodes BGR; edgeface works in RGB internally
    return img


_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _decode(path: str) -> tuple[np.ndarray, list[str]]:
    """Decoded pixels (upright) and notes. The header is read first (Pillow) and the pixel budget
    enforced before decoding; OpenCV decodes where installed (what the evaluation always used),
    Pillow otherwise and for reduced JPEG decoding. Every decoder failure is an ImageError."""
    notes: list[str] = []
    hdr = _header(path)
    with open(path, "rb") as f:
        if f.read(2) == b"\xff\xd8":  # a JPEG, whether or not Pillow knows it (OpenCV decodes it either way)
            _check_jpeg_scans(path)
    reduce = hdr.reduce if hdr is not None else 1
    try:
        img = _decode_opencv(path, hdr) if reduce == 1 else None
        if img is None:
            if hdr is None:
                try:
                    import PIL  # noqa: F401
                except ImportError:
                    raise ImportError("reading image files needs opencv-python-headless or Pillow") from None
                raise ImageError(path, "unreadable", "not a decodable image (unknown or corrupt format)")
            img = _decode_pillow(path, hdr, reduce)
            if reduce > 1:
                notes.append(f"decoded at 1/{reduce} size")
    except (ImageError, ImportError):
        raise
    except MemoryError:
        raise ImageError(path, "huge", "not enough memory to decode this image") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise ImageError(path, "unreadable", f"not a decodable image ({exc.__class__.__name__})") from None
    if hdr is not None and hdr.orientation != 1:
        img = np.ascontiguousarray(_ORIENT[hdr.orientation](img))
        notes.append(f"exif-rotated (orientation {hdr.orientation})")
    return img, notes


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
    Grayscale images are expanded to 3 channels, EXIF orientation applied, 16-bit and palette
    images converted, and huge ones downscaled (JPEGs decoded reduced), with a note each.
    Images over MAX_PIXELS (after the JPEG reduction) are refused before decoding.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(path, "missing", "no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise ImageError(path, "empty", "the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(path, "huge", f"the file is {size / 2**20:.0f} MB, over the {MAX_FILE_BYTES >> 20} MB limit for one photo")
    if not os.access(path, os.R_OK):
        raise ImageError(path, "unreadable", "permission denied")
    raw, decode_notes = _decode(path)
    img, notes = to_uint8_rgb(raw, path)
    notes = decode_notes + notes
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
