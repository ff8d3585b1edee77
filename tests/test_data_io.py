from pathlib import Path

import numpy as np
import pytest

from edgeface.eval.datasets import DataError, identity_folder, load_pairs, read_lfw_pairs, read_pairs_csv
from edgeface.core.imageio import ImageError, read_image, to_uint8_rgb

cv2 = pytest.importorskip("cv2")


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def images(tmp_path, rng):
    d = tmp_path / "imgs"
    return {
        "color": _write(d / "color.jpg", rng.integers(0, 255, (120, 100, 3), dtype=np.uint8)),
        "gray": _write(d / "gray.png", rng.integers(0, 255, (120, 100), dtype=np.uint8)),
        "tiny": _write(d / "tiny.png", rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)),
        "huge": _write(d / "huge.png", np.zeros((5000, 300, 3), np.uint8)),
        "rgba": _write(d / "rgba.png", rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)),
    }


def test_reads_color_as_rgb(images):
    bgr = cv2.imread(str(images["color"]))
    img = read_image(images["color"])
    np.testing.assert_array_equal(img.pixels, bgr[:, :, ::-1])
    assert img.notes == []
    np.testing.assert_array_equal(read_image(images["color"], "BGR").pixels, bgr)


def test_grayscale_expanded_with_note(images):
    img = read_image(images["gray"])
    assert img.pixels.shape == (120, 100, 3) and img.notes == ["grayscale"]
    assert read_image(images["rgba"]).pixels.shape == (64, 64, 3)


def test_huge_downscaled_with_note(images):
    img = read_image(images["huge"])
    assert max(img.pixels.shape[:2]) == 4096 and "downscaled" in img.notes


@pytest.mark.parametrize(
    "content,reason,msg",
    [
        (None, "missing", "no such file"),
        (b"", "empty", "0 bytes"),
        (b"not an image", "unreadable", "not a decodable image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "unreadable", "not a usable JPEG"),  # JPEG markers are read before decoding (issue 37)
    ],
)
def test_bad_files_raise_named_errors(tmp_path, content, reason, msg):
    path = tmp_path / "face.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=msg) as ei:
        read_image(path)
    assert ei.value.reason == reason and str(path) in str(ei.value)


def test_tiny_rejected(images):
    with pytest.raises(ImageError, match="smaller than") as ei:
        read_image(images["tiny"])
    assert ei.value.reason == "tiny"


def test_array_conversion():
    f = np.random.default_rng(1).random((30, 30, 3))
    assert to_uint8_rgb(f)[0].dtype == np.uint8
    with pytest.raises(ImageError, match="NaN"):
        to_uint8_rgb(np.full((30, 30), np.nan))
    with pytest.raises(ImageError, match="shape"):
        to_uint8_rgb(np.zeros((30, 30, 2), np.uint8))


def test_lfw_pairs_any_number_of_folds(tmp_path):
    lines = ["3\t2"]
    for f in range(3):
        lines += [f"A_{f}\t1\t2", f"B_{f}\t1\t3", f"A_{f}\t1\tB_{f}\t2", f"C_{f}\t4\tD_{f}\t1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = read_lfw_pairs(tmp_path / "pairs.txt")
    assert len(pairs) == 12
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4 + [2] * 4
    assert [p.same for p in pairs[:4]] == [True, True, False, False]
    assert pairs[0].a.endswith("A_0/A_0_0001.jpg") and pairs[3].b.endswith("D_0/D_0_0001.jpg")


def test_lfw_pairs_errors(tmp_path):
    (tmp_path / "pairs.txt").write_text("2\t1\nA\t1\t2\n")
    with pytest.raises(DataError, match="header says 2 folds"):
        read_lfw_pairs(tmp_path / "pairs.txt")
    (tmp_path / "pairs.txt").write_text("1\t1\nA\t1\t2\nA\tx\tB\t2\n")
    with pytest.raises(DataError, match=r"pairs.txt:3: image number 'x'"):
        read_lfw_pairs(tmp_path / "pairs.txt")


def test_csv_pairs(tmp_path):
    (tmp_path / "p.csv").write_text("a,b,same,fold\nx/1.jpg,x/2.jpg,1,0\nx/1.jpg,y/1.jpg,false,1\n")
    pairs = read_pairs_csv(tmp_path / "p.csv")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 1)]
    assert pairs[0].a == str(tmp_path / "x/1.jpg")
    (tmp_path / "bad.csv").write_text("a,b,same\nx,y,maybe\n")
    with pytest.raises(DataError, match="bad.csv:2: 'same' must be"):
        read_pairs_csv(tmp_path / "bad.csv")
    (tmp_path / "nohdr.csv").write_text("x,y\n")
    with pytest.raises(DataError, match="header must name columns"):
        read_pairs_csv(tmp_path / "nohdr.csv")
    with pytest.raises(DataError, match="no pairs.txt or pairs.csv"):
        load_pairs(tmp_path / "x")


def test_identity_folder(tmp_path, rng):
    for ident, n in (("a", 3), ("b", 1)):
        for i in range(n):
            _write(tmp_path / "images" / ident / f"{i}.jpg", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    items = identity_folder(tmp_path)
    assert [i for _, i in items] == ["a", "a", "a", "b"]
    assert len(identity_folder(tmp_path, min_images=2)) == 3
    with pytest.raises(DataError, match="found no images"):
        identity_folder(tmp_path / "images" / "a")
