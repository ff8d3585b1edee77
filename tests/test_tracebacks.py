"""Issue 37, "Tracebacks (5)": a symlink loop inside a bundle (RuntimeError from Path.resolve, from
the API and the CLI), landmarks passed as a dict (TypeError from numpy), and output piped into a
reader that closes it (BrokenPipeError). Each now gives a clear error (a BundleError / a
"bad_landmarks" Rejection / a ValueError) or, for the closed pipe, a quiet exit 141. The CLI cases
run `python -m edgeface` in a subprocess, as a user's shell would. Tiny sealed bundle, no ../shared."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeface.runtime.bundle import BundleError, load_bundle
from edgeface.runtime.face import FaceRecognizer, Rejection
from tiny_bundle import make_tiny_bundle, read

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
ROOT = Path(__file__).resolve().parent.parent
LM = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float64)
LM_ARG = "30,40,70,40,50,60,35,80,65,80"


def cli(*argv, close_stdout=False):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "edgeface", *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if close_stdout:
        p.stdout.close()  # the reader went away before the first line (`| head -0`)
        out = ""
    err = p.stderr.read().decode()
    if not close_stdout:
        out = p.stdout.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err, err
    return p.returncode, out, err


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("tb")
    bundle = make_tiny_bundle(d / "bundle")
    from PIL import Image

    img = d / "face.png"
    pixels = np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(img)
    g = d / "g.db"
    assert FaceRecognizer.from_bundle(bundle, gallery=g, gate=False).enroll("alice", [pixels], landmarks=[LM]).enrolled
    return bundle, img, g, pixels


@pytest.mark.parametrize("which", ["model", "conformance"])
def test_symlink_loop_in_a_bundle_is_a_bundle_error(tmp_path, which, setup):
    d = make_tiny_bundle(tmp_path / "b")
    name = "model.onnx" if which == "model" else sorted(read(d)["conformance"]["files"])[0]
    (d / name).unlink()
    os.symlink(Path(name).name, d / name)  # name -> name: ELOOP
    with pytest.raises(BundleError) as exc:
        load_bundle(d)
    assert exc.value.kind == "model_file" and "symlink loop" in str(exc.value), str(exc.value)
    _, img, g, _ = setup
    rc, out, err = cli("verify", img, "alice", "--bundle", d, "--gallery", g, "--landmarks", LM_ARG)
    assert rc == 1 and "symlink loop" in err and len(err.strip().splitlines()) == 1, err


def test_landmarks_as_a_dict_are_refused_not_a_type_error(setup):
    bundle, _, g, pixels = setup
    rec = FaceRecognizer.from_bundle(bundle, gallery=g, gate=False)
    as_dict = dict(zip(["right_eye", "left_eye", "nose", "right_mouth", "left_mouth"], LM.tolist()))
    for bad in (as_dict, {0: LM[0]}, {1, 2}, object()):
        v = rec.verify(pixels, "alice", landmarks=bad)
        assert v.decision == "rejected" and v.rejected[0].reason == "bad_landmarks", v.to_dict()
        assert "expected 5 (x, y) points as numbers" in v.rejected[0].detail
    (r,) = rec.analyze([pixels], landmarks=[as_dict])
    assert isinstance(r, Rejection) and r.reason == "bad_landmarks"
    for call in (lambda: rec.analyze([pixels], landmarks=as_dict), lambda: rec.enroll("bob", [pixels], landmarks=as_dict),
                 lambda: rec.analyze([pixels], landmarks=[LM], detector_scores={"a": 1.0})):
        with pytest.raises(ValueError, match="one entry per image"):
            call()
    assert rec.verify(pixels, "alice", landmarks=LM).match is True  # the same points as an array still work


def test_output_into_a_closed_pipe_exits_quietly(setup):
    bundle, img, g, _ = setup
    rc, _, err = cli("verify", img, "alice", "--bundle", bundle, "--gallery", g, "--landmarks", LM_ARG, "--json", close_stdout=True)
    assert rc == 141 and err == "", (rc, err)
    rc, _, err = cli("gallery", "list", "--gallery", g, close_stdout=True)
    assert rc == 141 and err == "", (rc, err)


@pytest.mark.parametrize("value", [7, 2.5, "text"])
def test_a_gallery_row_that_is_not_a_blob_is_refused(tmp_path, value):
    """Found by the fuzz harness at 2x its cases: an SQLite row whose template is an integer (SQLite
    stores any type in a BLOB column) made search() raise TypeError from len()."""
    import sqlite3

    from edgeface.runtime.gallery import Gallery, GalleryError
    from tiny_bundle import CARD

    p = tmp_path / "g.db"
    with Gallery(p, card=CARD) as g:
        for i in range(3):
            v = np.random.default_rng(i).normal(size=CARD.embedding_size)
            g.add(f"p{i}", v / np.linalg.norm(v))
    con = sqlite3.connect(p)
    con.execute("UPDATE identities SET template = ? WHERE name = 'p1'", (value,))
    con.commit()
    con.close()
    with pytest.raises((GalleryError, ValueError), match="not .*bytes"):
        with Gallery(p, readonly=True) as h:
            h.search(np.ones(CARD.embedding_size, np.float32), top_k=2)
