"""FaceRecognizer on real LFW faces: enrol / verify / identify, and every kind of bad input."""
import numpy as np
import pytest

from edgeface.runtime.face import UNKNOWN, Face, FaceRecognizer, Rejection
from edgeface.runtime.gallery import Gallery, ModelMismatchError
from edgeface.runtime.quality import DEFAULT_THRESHOLDS

# A test-only decision threshold for the reference model (cosine); real apps get theirs
# from the bundle's calibration.
THRESHOLDS = {"1e-3": 0.40}
PEOPLE = ["Hugo_Chavez", "Jacques_Chirac", "Laura_Bush", "Andre_Agassi"]


@pytest.fixture(scope="module")
def embedder(reference_model):
    import torch

    from edgeface.models.embedder import TorchEmbedder

    torch.set_num_threads(2)
    model, card = reference_model
    return TorchEmbedder(model, card, device="cpu")


@pytest.fixture(scope="module")
def lfw(shared):
    root = shared / "datasets" / "lfw-dev" / "images"
    return {p: sorted(str(f) for f in (root / p).glob("*.jpg")) for p in PEOPLE + ["Colin_Powell"]}


@pytest.fixture
def rec(embedder, yunet, tmp_path):
    return FaceRecognizer(embedder, gallery=tmp_path / "g.db", detector=yunet, thresholds=THRESHOLDS)


def test_enroll_verify_identify_on_real_faces(rec, lfw):
    for p in PEOPLE[:3]:
        res = rec.enroll(p, lfw[p][:3])
        assert res.enrolled and len(res.used) + len(res.rejected) == 3 and res.used
        assert 0 < res.quality <= 1
    assert sorted(rec.gallery.names()) == sorted(PEOPLE[:3])
    probe = lfw["Hugo_Chavez"][10]
    v = rec.verify(probe, "Hugo_Chavez")
    assert v.match is True and v.similarity >= v.threshold == THRESHOLDS["1e-3"]
    assert rec.verify(probe, "Laura_Bush").match is False
    ident = rec.identify(lfw["Jacques_Chirac"][10], top_k=3)
    assert ident.name == "Jacques_Chirac" and ident.decision == "identified"
    assert [c.name for c in ident.candidates][0] == "Jacques_Chirac" and len(ident.candidates) == 3
    # open set: a person never enrolled is "unknown", with the candidates still listed
    stranger = rec.identify(lfw["Andre_Agassi"][0])
    assert stranger.name == UNKNOWN and stranger.score < THRESHOLDS["1e-3"]
    with pytest.raises(KeyError, match="not enrolled"):
        rec.verify(probe, "Nobody")
    c = rec.compare(lfw["Laura_Bush"][5], lfw["Laura_Bush"][6])
    assert c.match is True and c.to_dict()["decision"] == "match"


def test_template_is_quality_weighted_mean(rec, lfw):
    res = rec.enroll("Laura_Bush", lfw["Laura_Bush"][:4])
    w = np.array([f.weight for f in res.used])
    e = np.stack([f.embedding for f in res.used])
    expect = (w[:, None] * e).sum(0)
    expect /= np.linalg.norm(expect)
    assert np.allclose(rec.gallery.template("Laura_Bush"), expect, atol=1e-6)
    assert rec.gallery.info("Laura_Bush")["n_images"] == len(res.used)


def test_same_alignment_as_evaluation_and_app_landmarks(rec, lfw, yunet, embedder):
    from edgeface.eval.faces import aligned_crops, detect_all
    from edgeface.core.landmarks import LandmarkStore

    files = lfw["Colin_Powell"][:3]
    faces = detect_all(files, LandmarkStore(yunet, None), show_progress=False)
    crops, ok = aligned_crops(files, faces, embedder.card, show_progress=False)
    lms = [faces.records[f].landmarks for f in files]
    # the app's own landmarks (here: the evaluation's cached detections) → identical crops
    no_det = FaceRecognizer(embedder, thresholds=THRESHOLDS)
    emb_app, results = no_det.embed_batch(files, landmarks=lms)
    assert ok.all() and all(isinstance(r, Face) for r in results)
    assert np.array_equal(np.stack([r.crop for r in results]), crops)
    assert np.allclose(emb_app, embedder.embed(crops), atol=1e-6)
    # the built-in detector path differs only by the cache's landmark rounding (3 decimals)
    emb_det, results_det = rec.embed_batch(files)
    diff = np.abs(np.stack([r.crop for r in results_det]).astype(int) - crops.astype(int))
    assert diff.mean() < 0.05
    assert np.allclose(emb_det, emb_app, atol=1e-2)


def test_bad_images_are_rejected_with_reasons(rec, lfw, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    blank = np.full((200, 200, 3), 128, np.uint8)
    cases = {
        str(tmp_path / "missing.jpg"): "missing",
        str(empty): "empty",
        str(corrupt): "unreadable",
    }
    results = rec.analyze(list(cases) + [np.zeros((10, 10, 3), np.uint8), blank, np.zeros((0, 0, 3), np.uint8), 42])
    reasons = [r.reason for r in results]
    assert reasons == list(cases.values()) + ["tiny", "no_face", "empty", "invalid"]
    assert all(isinstance(r, Rejection) and r.detail for r in results)
    # a verify with a rejected probe gives no decision rather than a wrong one
    rec.enroll("Laura_Bush", lfw["Laura_Bush"][:2])
    v = rec.verify(blank, "Laura_Bush")
    assert v.match is None and v.decision == "rejected" and v.rejected[0].reason == "no_face"
    i = rec.identify(str(corrupt))
    assert i.name is None and i.decision == "rejected"
    # enrolling only bad images stores nothing
    res = rec.enroll("Ghost", [blank, str(empty)])
    assert not res.enrolled and "Ghost" not in rec.gallery and len(res.rejected) == 2


def test_several_faces_reject_or_primary(embedder, yunet, lfw, tmp_path):
    from edgeface.core.imageio import read_image

    a = read_image(lfw["Laura_Bush"][0]).pixels
    b = read_image(lfw["Hugo_Chavez"][0]).pixels
    two = np.concatenate([a, b], axis=1)
    strict = FaceRecognizer(embedder, detector=yunet, thresholds=THRESHOLDS, multiple_faces="reject")
    (r,) = strict.analyze([two])
    assert isinstance(r, Rejection) and r.reason == "several_faces"
    lenient = FaceRecognizer(embedder, detector=yunet, thresholds=THRESHOLDS)
    (f,) = lenient.analyze([two])
    assert isinstance(f, Face) and "faces found" in f.notes[0]
    assert f.faces_detected >= 2 and f.to_dict()["faces_detected"] == f.faces_detected  # issue 20: said in the result
    # largest / center pick by their own rule; a bigger Hugo on the right wins "largest"
    big_b = np.repeat(np.repeat(b, 2, axis=0), 2, axis=1)
    pad = np.zeros((big_b.shape[0], a.shape[1], 3), np.uint8)
    pad[: a.shape[0]] = a
    scene = np.concatenate([pad, big_b], axis=1)
    boxes = {}
    for policy in ("largest", "center", "primary"):
        (g,) = FaceRecognizer(embedder, detector=yunet, thresholds=THRESHOLDS, multiple_faces=policy, gate=False).analyze([scene])
        assert isinstance(g, Face) and g.faces_detected >= 2 and policy in g.notes[0]
        boxes[policy] = g.box
    assert (boxes["largest"][0] + boxes["largest"][2]) / 2 > a.shape[1]  # the enlarged face, on the right


def test_bad_landmarks_are_rejected(embedder, lfw):
    rec = FaceRecognizer(embedder, thresholds=THRESHOLDS)
    img = lfw["Laura_Bush"][0]
    good = np.array([[100, 115], [150, 115], [125, 140], [105, 165], [145, 165]], float)
    bad = {
        "4 points": good[:4],
        "NaN": np.where(np.arange(10).reshape(5, 2) == 3, np.nan, good),
        "outside": good + 1000,
        "coincident": np.tile(good[:1], (5, 1)),
    }
    results = rec.analyze([img] * len(bad), landmarks=list(bad.values()))
    for (what, _), r in zip(bad.items(), results):
        assert isinstance(r, Rejection) and r.reason == "bad_landmarks", what
    assert "shape" in results[0].detail and "NaN" in results[1].detail and "outside" in results[2].detail
    (ok,) = rec.analyze([img], landmarks=[good])
    assert isinstance(ok, Face)
    # no landmarks and no detector: a clear rejection, not a crash
    (r,) = rec.analyze([img])
    assert r.reason == "no_landmarks"
    with pytest.raises(ValueError, match="landmark sets"):
        rec.analyze([img, img], landmarks=[good])


def test_quality_gate_explains_and_enroll_is_stricter(embedder, yunet, lfw):
    import cv2

    from edgeface.core.imageio import read_image

    for k, v in DEFAULT_THRESHOLDS["verify"].items():
        e = DEFAULT_THRESHOLDS["enroll"][k]
        assert (e >= v) if k.startswith("min_") else (e <= v), k
    rec = FaceRecognizer(embedder, detector=yunet, thresholds=THRESHOLDS)
    # a good frontal photo passes the strict gate; every check reports value and threshold
    images = [read_image(f).pixels for f in lfw["Laura_Bush"][:6]]
    results = rec.analyze(images, mode="enroll")
    good_idx = [i for i, r in enumerate(results) if isinstance(r, Face)]
    assert good_idx, [r.detail for r in results]
    good = results[good_idx[0]]
    assert good.quality.passed and not good.quality.reasons
    assert {c.name for c in good.quality.checks} >= {"interocular", "sharpness", "brightness", "contrast", "abs_yaw", "abs_pitch", "abs_roll", "detector_score", "flip_similarity", "face_size"}
    assert all(np.isfinite(c.value) and np.isfinite(c.threshold) for c in good.quality.checks)
    img = images[good_idx[0]]
    # the same photo blurred or darkened is rejected, and the failed check says why
    blurred = cv2.GaussianBlur(img, (0, 0), 4)
    dark = (img * 0.12).astype(np.uint8)
    r_blur, r_dark = rec.analyze([blurred, dark], mode="enroll")
    assert r_blur.reason == "quality" and "blurred" in r_blur.detail
    sharp = next(c for c in r_blur.quality.checks if c.name == "sharpness")
    assert sharp.value < sharp.threshold and not sharp.passed
    assert r_dark.reason == "quality" and "dark" in r_dark.detail
    # a small face: fine to verify with, not good enough to enrol
    small = cv2.resize(img, (100, 100), interpolation=cv2.INTER_AREA)
    (v,) = rec.analyze([small], mode="verify")
    (e,) = rec.analyze([small], mode="enroll")
    assert isinstance(v, Face) and isinstance(e, Rejection) and e.reason == "quality"


def test_thresholds_and_gallery_identity_are_enforced(embedder, tmp_path):
    with pytest.raises(ValueError, match="no threshold calibrated for FAR 1e-5"):
        FaceRecognizer(embedder, thresholds=THRESHOLDS).threshold("1e-5")
    with pytest.raises(ValueError, match="no calibrated thresholds"):
        FaceRecognizer(embedder).compare(np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50, 3), np.uint8))
    other = embedder.card.replace(name="someone-elses-model")
    Gallery(tmp_path / "other.db", card=other).close()
    with pytest.raises(ModelMismatchError, match="someone-elses-model"):
        FaceRecognizer(embedder, gallery=tmp_path / "other.db", thresholds=THRESHOLDS)
    with pytest.raises(ValueError, match="binary"):
        FaceRecognizer(embedder, gallery=tmp_path / "bin.db", codec="binary")
    with pytest.raises(ValueError, match="no gallery"):
        FaceRecognizer(embedder, thresholds=THRESHOLDS).identify(np.zeros((50, 50, 3), np.uint8))


class _ExportedBundleLike:
    """What a bundle exported by this kit offers: cosine thresholds and per-codec ones."""

    thresholds = {"1e-3": 0.40}

    def __init__(self, inner):
        self.card, self.backend, self.embed = inner.card, inner.backend, inner.embed

    def codec_thresholds(self, codec):
        return {"1e-3": 0.25} if codec == "binary512" else {}


def test_hamming_gallery_decides_with_the_bundles_codec_thresholds(embedder, yunet, lfw, tmp_path):
    from edgeface.runtime.codecs import get_codec

    model = _ExportedBundleLike(embedder)
    rec = FaceRecognizer(model, gallery=tmp_path / "b512.db", detector=yunet, codec="binary512")
    assert rec.threshold("1e-3") == 0.25 and rec.threshold("1e-3", cosine=True) == 0.40
    enrol, probe = lfw["Laura_Bush"][:2]
    assert rec.enroll("Laura_Bush", [enrol]).enrolled
    v = rec.verify(probe, "Laura_Bush")
    assert v.threshold == 0.25
    # the score is the Hamming similarity of the probe's code to the stored code, not a cosine
    (face,) = rec.analyze([probe], mode="verify")
    c = get_codec("binary512", face.embedding.shape[0])
    assert v.similarity == pytest.approx(float(c.similarity(face.embedding, rec.gallery.template_code("Laura_Bush"))[0, 0]), abs=1e-6)
    assert v.similarity != pytest.approx(float(np.dot(face.embedding, rec.gallery.template("Laura_Bush"))), abs=1e-3)
    assert rec.compare(enrol, probe).threshold == 0.40  # two images: cosine, cosine threshold
    with pytest.raises(ValueError, match="no thresholds calibrated for that codec"):
        FaceRecognizer(model, gallery=tmp_path / "b.db", codec="binary")
