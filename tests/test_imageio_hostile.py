"""Issue 20, finding 3: the image decoder against hostile and unlucky files. Every file gives
pixels or an ImageError with a reason code (never another exception); the pixel budget is
enforced on the header, before decoding; EXIF orientation, 16-bit and palette images come out
right with OpenCV and with Pillow alone (the [runtime] install has no OpenCV)."""
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeface.core import imageio
from edgeface.core.imageio import ImageError, read_image

Image = pytest.importorskip("PIL.Image")
from PIL import ImageOps  # noqa: E402


@pytest.fixture(params=["opencv", "pillow-only"])
def decoder(request, monkeypatch):
    """Run each test with the default decoder (OpenCV where installed) and with Pillow alone."""
    if request.param == "pillow-only":
        monkeypatch.setitem(sys.modules, "cv2", None)
    else:
        pytest.importorskip("cv2")
    return request.param


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, w: int, h: int, real: bool = False) -> Path:
    """A grey 8-bit PNG of w x h. real=False: only the header is honest (the pixel data is a
    few zero rows): enough to test a refusal that must happen before decoding. real=True: every
    row is there (zeros compress ~1000:1, so 11000x11000 is ~120 KB)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (w + 1 if real else 64)
    parts = []
    for _ in range(h if real else 4):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("w,h", [(20000, 20000), (11000, 11000), (100000, 10), (2**31 - 1, 2**31 - 1)])
def test_pixel_bombs_refused_before_decoding(tmp_path, decoder, w, h):
    path = png_bomb(tmp_path / "bomb.png", w, h)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert exc.value.reason in ("huge", "unreadable", "tiny"), exc.value
    if w * h > imageio.MAX_PIXELS and exc.value.reason == "huge":
        assert "before decoding" in str(exc.value) or "budget" in str(exc.value)


def test_real_png_bomb_costs_little_memory(tmp_path):
    """An 11000x11000 PNG of ~120 KB (issue 20: 3.75 GB and 3 minutes) in a fresh process:
    refused, and the process's peak RSS stays far below the decoded size (363 MB as RGB)."""
    path = png_bomb(tmp_path / "bomb.png", 11000, 11000, real=True)
    assert path.stat().st_size < 10 << 20
    code = ("import resource, sys, json\nfrom edgeface.core.imageio import read_image, ImageError\n"
            "import PIL.Image, numpy\ntry:\n    import cv2\nexcept ImportError:\n    pass\n"  # the decoders' own import cost is not the image's
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    read_image(sys.argv[1]); r = 'decoded'\nexcept ImageError as e:\n    r = e.reason\n"
            "print(json.dumps({'reason': r, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'base_mb': base / 1024}))")
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["reason"] == "huge"
    assert out["peak_mb"] - out["base_mb"] < 60, out


def test_big_jpeg_is_decoded_reduced_not_refused(tmp_path, decoder, monkeypatch):
    """A JPEG over the pixel budget decodes at 1/2..1/8 size (libjpeg's DCT scaling)."""
    monkeypatch.setattr(imageio, "MAX_PIXELS", 4_000_000)  # the same rule at a tenth of the size: fast
    w, h = 3000, 2000
    im = Image.new("RGB", (w, h), (200, 120, 40))
    path = tmp_path / "big.jpg"
    im.save(path, quality=80)
    got = read_image(path)
    assert got.pixels.shape[0] * got.pixels.shape[1] <= imageio.MAX_PIXELS
    assert any("decoded at 1/" in n for n in got.notes), got.notes
    assert np.abs(got.pixels.reshape(-1, 3).mean(0) - [200, 120, 40]).max() < 3


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow(tmp_path, decoder, orientation):
    rng = np.random.default_rng(orientation)
    arr = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    path = tmp_path / "o.png"
    Image.fromarray(arr).save(path, exif=_exif(orientation))
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    np.testing.assert_array_equal(got.pixels, want)
    assert (orientation != 1) == any(n.startswith("exif-rotated") for n in got.notes)


def test_exif_rotated_jpeg(tmp_path, decoder):
    arr = np.zeros((60, 100, 3), np.uint8)
    arr[:, :50] = 255  # left half white
    path = tmp_path / "r.jpg"
    Image.fromarray(arr).save(path, exif=_exif(6), quality=95)  # stored sideways, "rotate 90 CW to view"
    got = read_image(path).pixels
    assert got.shape == (100, 60, 3)
    assert got[:45].mean() > 200 and got[55:].mean() < 50  # the left half is now on top


def test_16bit_grey_png_is_not_white(tmp_path, decoder):
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 20).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    got = read_image(path)
    want = (ramp >> 8).astype(np.uint8)
    assert np.abs(got.pixels[..., 0].astype(int) - want).max() <= 1
    assert got.pixels.mean() < 128  # was all 255 through Pillow's convert("L")


def test_palette_and_alpha_images_convert_correctly(tmp_path, decoder):
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    p = Image.fromarray(arr).quantize(16)
    path = tmp_path / "pal.png"
    p.save(path)
    want = np.asarray(p.convert("RGB"))
    np.testing.assert_array_equal(read_image(path).pixels, want)
    la = Image.fromarray(np.full((30, 30, 2), 90, np.uint8), "LA")
    la.save(tmp_path / "la.png")
    assert (read_image(tmp_path / "la.png").pixels == 90).all()
    cmyk = Image.new("CMYK", (30, 30), (0, 0, 0, 0))
    cmyk.save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").pixels.mean() > 240


def test_corrupt_and_odd_files_give_image_errors_only(tmp_path, decoder):
    rng = np.random.default_rng(7)
    good = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(good, "PNG")
    jpg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(jpg, "JPEG")
    gif = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(gif, "GIF")
    cases = {
        "trunc.png": good.getvalue()[: len(good.getvalue()) // 2],
        "trunc.jpg": jpg.getvalue()[:200],
        "magic_only.png": b"\x89PNG\r\n\x1a\n" + rng.bytes(500),
        "zero_dims.png": b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0)),
        "bad_depth.png": b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 50, 50, 7, 2, 0, 0, 0)),
        "random.bin": rng.bytes(4096),
        "text.jpg": b"hello" * 100,
        "gif.gif": gif.getvalue(),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        try:
            img = read_image(path)
        except ImageError as exc:
            assert exc.reason in ("unreadable", "invalid", "huge", "tiny", "empty"), (name, exc)
        else:
            assert img.pixels.dtype == np.uint8 and img.pixels.ndim == 3 and img.pixels.shape[2] == 3, name
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "dir.png")
    assert exc.value.reason == "missing"


def test_unreadable_file_permission(tmp_path, decoder):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "locked.png"
    Image.new("RGB", (40, 40)).save(path)
    path.chmod(0)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert exc.value.reason == "unreadable"


# -- issue 37: progressive-JPEG bombs (files written byte by byte by tests/jpeg_bombs.py) -------------
def test_progressive_jpeg_claiming_a_huge_frame_is_refused_before_decoding(tmp_path, decoder):
    from jpeg_bombs import progressive_jpeg

    p = tmp_path / "bomb.jpg"
    p.write_bytes(progressive_jpeg(13000, 13000, dc_bytes=7000))  # the 7 KB file: 13000x13000, 4:2:0
    assert p.stat().st_size < 8000
    with pytest.raises(ImageError) as exc:
        read_image(p)
    assert exc.value.reason == "huge" and "MB of DCT coefficients" in exc.value.detail and "13000x13000" in exc.value.detail, exc.value.detail


def test_jpeg_of_hundreds_of_scans_is_refused(tmp_path, decoder):
    from jpeg_bombs import progressive_jpeg

    p = tmp_path / "scans.jpg"
    p.write_bytes(progressive_jpeg(1000, 1000, ac_scans=300, refine=True))  # 901 scans in 16 KB
    with pytest.raises(ImageError) as exc:
        read_image(p)
    assert exc.value.reason == "huge" and "901 scans" in exc.value.detail, exc.value.detail
    # within the scan count, but walking too many blocks: 100 scans of a 4000x4000 grey frame
    p.write_bytes(progressive_jpeg(4000, 4000, ac_scans=99, grey=True))
    with pytest.raises(ImageError) as exc:
        read_image(p)
    assert exc.value.reason == "huge" and "blocks to decode" in exc.value.detail, exc.value.detail


def test_real_progressive_and_baseline_jpegs_still_decode(tmp_path, decoder):
    from jpeg_bombs import progressive_jpeg

    rng = np.random.default_rng(3)
    arr = np.repeat(np.repeat(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), 8, 0), 8, 1)  # 480x640
    for prog in (True, False):
        p = tmp_path / f"p{prog}.jpg"
        Image.fromarray(arr).save(p, "JPEG", quality=90, progressive=prog)
        js = imageio.jpeg_structure(p.read_bytes())
        assert (js["process"], js["width"], js["height"]) == ("progressive" if prog else "baseline", 640, 480)
        assert (len(js["scans"]) >= 6) if prog else (len(js["scans"]) == 1), js["scans"]
        img = read_image(p)
        assert img.pixels.shape == (480, 640, 3) and abs(float(img.pixels.mean()) - float(arr.mean())) < 3
    p = tmp_path / "ok.jpg"
    p.write_bytes(progressive_jpeg(2000, 1500, ac_scans=10))  # 31 scans of 2000x1500: a flat grey photo
    assert read_image(p).pixels.shape == (1500, 2000, 3)


def test_jpeg_markers_that_cannot_be_sized_are_refused(tmp_path, decoder):
    from jpeg_bombs import progressive_jpeg

    good = progressive_jpeg(64, 64)
    arithmetic = good.replace(b"\xff\xc2", b"\xff\xca", 1)  # SOF10: progressive arithmetic coding
    scan_first = good[:2] + good[good.index(b"\xff\xda"):]
    for name, data, what in (("arith", arithmetic, "SOF10"), ("noframe", scan_first, "scan before the frame")):
        p = tmp_path / f"{name}.jpg"
        p.write_bytes(data)
        with pytest.raises(ImageError) as exc:
            read_image(p)
        assert exc.value.reason == "unreadable" and what in exc.value.detail, exc.value.detail
