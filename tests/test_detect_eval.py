import json
import shutil

import numpy as np
import pytest

from edgeface.cli import main
from edgeface.core import paths

cv2 = pytest.importorskip("cv2")
REF = str(paths.reference_mobilefacenet())


def _lfw_images(shared, n):
    root = shared / "datasets" / "lfw-dev" / "images"
    return sorted(root.glob("A*/*.jpg"))[:n]


def test_yunet_decoding_matches_opencv(shared, yunet):
    """Our ONNX Runtime decoding + NMS equals OpenCV's FaceDetectorYN on the same input."""
    from edgeface.core.imageio import read_image

    cvd = cv2.FaceDetectorYN.create(str(paths.yunet_model()), "", (640, 640), yunet.score_threshold, yunet.nms_threshold)
    for p in _lfw_images(shared, 6):
        img = read_image(p).pixels
        ours = yunet.detect(img)
        blob, scale = yunet._letterbox(np.ascontiguousarray(img[:, :, ::-1]))
        _, theirs = cvd.detect(np.ascontiguousarray(blob[0].transpose(1, 2, 0)).astype(np.uint8))
        assert theirs is not None and len(ours) == len(theirs)
        np.testing.assert_allclose(ours[0].landmarks.ravel() * scale, theirs[0][4:14], atol=0.05)
        assert ours[0].score == pytest.approx(float(theirs[0][14]), abs=1e-4)


def test_primary_face_is_the_centred_one(shared, yunet):
    from edgeface.core.detect import pick_primary
    from edgeface.core.imageio import read_image

    img = read_image(_lfw_images(shared, 1)[0]).pixels
    # Paste a second, smaller copy of the face in a corner: the centred one must be chosen.
    canvas = np.zeros((500, 500, 3), np.uint8)
    canvas[125:375, 125:375] = img
    canvas[0:125, 0:125] = cv2.resize(img, (125, 125))
    dets = yunet.detect(canvas)
    assert len(dets) >= 2
    prim = pick_primary(dets, canvas.shape)
    cx = (prim.box[0] + prim.box[2]) / 2
    assert 200 < cx < 300


def test_eval_counts_bad_images_instead_of_crashing(shared, tmp_path, capsys):
    imgs = _lfw_images(shared, 12)  # >= 10 same-size detections make the fallback landmarks
    d = tmp_path / "ds"
    d.mkdir()
    names = []
    for i, p in enumerate(imgs):
        shutil.copy(p, d / f"{i}.jpg")
        names.append(f"{i}.jpg")
    (d / "broken.jpg").write_text("not a jpeg")
    cv2.imwrite(str(d / "noface.png"), np.full((250, 250, 3), 128, np.uint8))
    cv2.imwrite(str(d / "gray.png"), cv2.imread(str(imgs[0]), cv2.IMREAD_GRAYSCALE))
    rows = ["a,b,same,fold"]
    for k in range(0, 12, 2):
        rows.append(f"{names[k]},{names[k + 1]},{int(imgs[k].parent == imgs[k + 1].parent)},{k // 6}")
    rows += ["broken.jpg,0.jpg,0,0", "noface.png,1.jpg,0,1", "gray.png,0.jpg,1,1", "missing.jpg,2.jpg,0,1"]
    (d / "pairs.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "r.json"
    rc = main(["eval", REF, "--data", str(d), "--json", str(out), "--quiet"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["num_pairs"] == 10 and rep["num_excluded"] == 2 and rep["num_scored"] == 8
    assert rep["num_failed"] == 1  # the blank image: no face, aligned by the fallback rule
    assert rep["image_problems"] == {"unreadable": 1, "missing": 1, "no_face": 1}
    assert rep["image_notes"] == {"grayscale": 1}
    err = capsys.readouterr().err
    assert "unreadable: 1" in err and "missing: 1" in err


def test_eval_missing_model_is_a_clear_error(tmp_path, capsys):
    rc = main(["eval", str(tmp_path / "nope.ckpt"), "--quiet"])
    assert rc == 1
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
def test_reference_model_lfw_dev_5fold(shared, tmp_path):
    """The README's main job: the third-party MobileFaceNet on LFW-dev folds 1-5."""
    out = tmp_path / "eval.json"
    roc = tmp_path / "roc.png"
    rc = main(["eval", REF, "--data", str(shared / "datasets" / "lfw-dev"), "--json", str(out), "--roc", str(roc), "--quiet"])
    assert rc == 0
    rep = json.loads(out.read_text())
    for key in ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far", "num_pairs", "num_failed"):
        assert key in rep
    assert rep["num_pairs"] == 3000 and rep["num_folds"] == 5
    assert rep["accuracy_mean"] >= 0.980, rep["accuracy_mean"]
    assert rep["auc"] > 0.995 and rep["eer"] < 0.025
    assert set(rep["tar_at_far"]) >= {"1e-2", "1e-3"} and rep["tar_at_far"]["1e-2"] > 0.95
    assert roc.stat().st_size > 10_000


def test_lfw_training_source_holds_no_person_of_an_evaluation_pair(shared):
    """The one part of LFW that distillation may use (faces.LFW_EXTRA) is the people of
    extra_identities.txt: none of them appears in a pair of folds 1-5."""
    from pathlib import Path

    from edgeface.eval.datasets import lfw_pair_identities, load_pairs
    from edgeface.eval.faces import lfw_extra_files

    files = lfw_extra_files()
    in_pairs = lfw_pair_identities(load_pairs(shared / "datasets" / "lfw-dev"))
    people = {Path(f).parent.name for f in files}
    assert len(files) > 1000 and len(people) > 1000
    assert not people & in_pairs
    assert len(in_pairs) > 1000  # the check compares against real pair identities
