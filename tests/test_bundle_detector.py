"""Issue 20, finding 7: after a pip install there was no detector default. `edgeface export
--detector PATH` ships YuNet inside the bundle (hashed in `files` like the model, licence and
provenance in the manifest's `detector` section, LICENSE copied beside it), and the runtime and
the CLI use it when no detector is given. The YuNet file comes from ../shared, never the repo."""
import json

import pytest

from edgeface.core import paths
from edgeface.runtime.bundle import BundleError, load_bundle
from tiny_bundle import make_tiny_bundle, read, reseal

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = [pytest.mark.shared]


@pytest.fixture
def yunet_file(shared):
    f = paths.yunet_model()
    if not f.is_file():
        pytest.skip(f"{f} not found")
    return f


@pytest.fixture
def bundle_with_detector(tmp_path, yunet_file):
    from edgeface.export.bundle_writer import add_detector

    d = make_tiny_bundle(tmp_path / "b")
    meta = read(d)
    section, files = add_detector(d, yunet_file)
    meta["files"].update(files)
    meta["detector"] = section
    reseal(d, meta)
    return d


def refused(d, kind):
    with pytest.raises(BundleError) as exc:
        load_bundle(d)
    assert exc.value.kind == kind, (exc.value.kind, str(exc.value))
    return str(exc.value)


def test_detector_is_hashed_with_its_licence_and_provenance(bundle_with_detector, yunet_file):
    from edgeface.runtime.bundle import file_sha256

    meta = read(bundle_with_detector)
    det = meta["detector"]
    assert det["kind"] == "yunet" and det["licence"] == "Apache-2.0" and "OpenCV Zoo" in det["source"]
    assert det["file"] == "detector/face_detection_yunet_2023mar.onnx" and meta["files"][det["file"]] == file_sha256(yunet_file)
    assert det["licence_file"] == "detector/LICENSE" and "Apache License" in (bundle_with_detector / "detector" / "LICENSE").read_text()
    b = load_bundle(bundle_with_detector)
    assert b.detector_file == bundle_with_detector / det["file"]


def test_runtime_uses_the_bundles_detector_when_none_is_given(bundle_with_detector, shared):
    from edgeface.runtime import FaceRecognizer

    rec = FaceRecognizer.from_bundle(bundle_with_detector)
    assert rec.detector is not None and rec.detector.model_path == str(bundle_with_detector / "detector" / "face_detection_yunet_2023mar.onnx")
    img = sorted((shared / "datasets" / "lfw-dev" / "images" / "Laura_Bush").glob("*.jpg"))[0]
    pixels, lm, score, box, notes = rec.locate(str(img))  # a face found by the shipped YuNet, not a no_landmarks rejection
    assert score > 0.6 and lm.shape == (5, 2)
    assert FaceRecognizer.from_bundle(bundle_with_detector, detector=False).detector is None  # the app gives landmarks


def test_tampered_or_unlisted_detector_is_refused(bundle_with_detector):
    d = bundle_with_detector
    f = d / "detector" / "face_detection_yunet_2023mar.onnx"
    data = bytearray(f.read_bytes())
    data[-100] ^= 1
    f.write_bytes(bytes(data))
    assert "detector/face_detection_yunet_2023mar.onnx" in refused(d, "file_hash")
    meta = read(d)
    del meta["files"][meta["detector"]["file"]]
    reseal(d, meta)
    assert "loaded unchecked" in refused(d, "model_file")
    meta = read(d)
    meta["detector"]["file"] = "../yunet.onnx"
    reseal(d, meta)
    refused(d, "model_file")
    for bad in ({"kind": "retinaface"}, {"licence": ""}, {"extra": 1}):
        meta = read(d)
        meta["files"][meta["detector"]["file"]] = "0" * 64
        meta["detector"].update(bad)
        reseal(d, meta)
        refused(d, "schema")


def test_add_detector_refuses_a_non_yunet_file_and_an_unknown_file_without_licence(tmp_path, yunet_file):
    from edgeface.export.bundle_writer import add_detector

    with pytest.raises(FileNotFoundError, match="--detector"):
        add_detector(tmp_path, tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="not a YuNet ONNX model"):
        add_detector(tmp_path, junk)
    other = make_tiny_bundle(tmp_path / "t") / "model.onnx"  # loads in onnxruntime, but is no YuNet
    with pytest.raises(ValueError, match="not a YuNet ONNX model"):
        add_detector(tmp_path, other)
    copy = tmp_path / "src" / "my_yunet.onnx"  # a YuNet the kit does not know by hash: the licence must be stated
    copy.parent.mkdir()
    data = bytearray(yunet_file.read_bytes())
    import onnx

    m = onnx.load_from_string(bytes(data))
    m.doc_string = "re-saved"
    onnx.save(m, str(copy))
    with pytest.raises(ValueError, match="--detector-licence"):
        add_detector(tmp_path / "x", copy)
    section, files = add_detector(tmp_path / "y", copy, licence="MIT (my own)")
    assert section["licence"] == "MIT (my own)" and list(files) == ["detector/my_yunet.onnx"]


def test_cli_uses_the_shipped_detector_and_names_the_options_without_one(bundle_with_detector, tmp_path, capsys, monkeypatch, shared):
    from edgeface.cli import main

    img = sorted((shared / "datasets" / "lfw-dev" / "images" / "Laura_Bush").glob("*.jpg"))[0]
    monkeypatch.setenv("EDGEFACE_SHARED", str(tmp_path / "no-shared"))  # no checkout fallback: as after a pip install
    rc = main(["enroll", "laura", str(img), "--bundle", str(bundle_with_detector), "--gallery", str(tmp_path / "g.db"), "--json"])
    out = capsys.readouterr()
    assert "--detector" not in out.err and "Traceback" not in out.err, out.err
    doc = json.loads(out.out)
    # the tiny model's 8x6 crops fail the quality gate, but the face was found by the bundle's detector
    assert "error" not in doc, doc
    reasons = [r["reason"] for r in doc["rejected"]]
    assert rc == 0 or reasons == ["quality"], (rc, doc)
    plain = make_tiny_bundle(tmp_path / "plain")
    rc = main(["identify", str(img), "--bundle", str(plain), "--gallery", str(tmp_path / "g.db")])
    err = capsys.readouterr().err
    assert rc == 1 and "--detector" in err and "edgeface export" in err and "Traceback" not in err, err


def test_model_size_does_not_count_the_bundled_detector(bundle_with_detector):
    from edgeface.bench.adapters import model_size_bytes

    b = load_bundle(bundle_with_detector)
    assert model_size_bytes(b) == (bundle_with_detector / "model.onnx").stat().st_size
