"""Issue 20: app-supplied landmarks that do not have the shape of a face (swapped, mirrored,
collinear, absurd proportions) are refused by the quality gate's landmark_residual check, while
real faces' landmarks (YuNet on LFW-dev) pass it. The measure's closed form is what the SDKs
reproduce (docs/runtime.md), so it is pinned here against the Umeyama fit align_face uses."""
import json

import numpy as np
import pytest

from edgeface.core.align import TEMPLATES, landmark_residual, similarity_transform, template_landmarks
from edgeface.runtime.quality import (DEFAULT_THRESHOLDS, LANDMARK_PERCENTILES, MIN_FACES_TO_CALIBRATE, QualityGate,
                                      calibrate_landmark_thresholds, measure)

ARC = template_landmarks("arcface_112x112")


def _rot(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def corruptions(lm, rng):
    """Landmark sets no face produces, from a real face's landmarks (5, 2)."""
    c = lm.mean(0)
    iod = np.linalg.norm(lm[1] - lm[0])
    ang = rng.uniform(0, np.pi)
    return {
        "mirrored (left/right labels swapped)": lm[[1, 0, 2, 4, 3]],
        "eyes and mouth swapped": lm[[3, 4, 2, 0, 1]],
        "mouth corners swapped": lm[[0, 1, 2, 4, 3]],
        "nose and an eye swapped": lm[[2, 1, 0, 3, 4]],
        "collinear": c + np.outer(np.array([-0.5, 0.5, 0, -0.25, 0.25]) * iod, [np.cos(ang), np.sin(ang)]),
        "squashed to 0.3 height": c + (lm - c) * [1, 0.3],
    }


def test_residual_is_zero_for_any_similarity_copy_of_the_template_and_scale_free():
    for name, (pts, _) in TEMPLATES.items():
        for deg, scale, shift in [(0, 1, 0), (30, 3.7, 100), (-170, 0.2, -5)]:
            copy = pts @ _rot(deg).T * scale + shift
            assert landmark_residual(copy, pts) < 1e-6, name  # sqrt of a cancelled sum: ~1e-8, not 0
    rng = np.random.default_rng(1)
    lm = ARC + rng.normal(0, 2, ARC.shape)
    r = landmark_residual(lm, ARC)
    assert 0.01 < r < 0.2
    assert landmark_residual(lm * 7.5 + 40, ARC) == pytest.approx(r, abs=1e-12)  # photo size does not matter
    # a crop size scales the template: residual in inter-ocular units is unchanged
    assert landmark_residual(lm, template_landmarks("arcface_112x112", (224, 224))) == pytest.approx(r, abs=1e-12)


def test_closed_form_equals_the_umeyama_fit_align_face_uses():
    rng = np.random.default_rng(2)
    for _ in range(200):
        lm = rng.uniform(0, 250, (5, 2))
        m = similarity_transform(lm, ARC)
        mapped = lm @ m[:, :2].T + m[:, 2]
        rms = np.sqrt(np.mean(np.sum((mapped - ARC) ** 2, axis=1)))
        assert landmark_residual(lm, ARC) == pytest.approx(rms / np.linalg.norm(ARC[1] - ARC[0]), abs=1e-9)


def test_residual_is_bounded_by_the_template_spread_and_degenerate_input_is_not_a_crash():
    spread = np.sqrt(np.mean(np.sum((ARC - ARC.mean(0)) ** 2, axis=1))) / np.linalg.norm(ARC[1] - ARC[0])
    rng = np.random.default_rng(3)
    values = [landmark_residual(rng.normal(0, 50, (5, 2)), ARC) for _ in range(500)]
    assert max(values) <= spread + 1e-12
    assert landmark_residual(np.tile([[10.0, 20.0]], (5, 1)), ARC) == pytest.approx(spread)  # all points at one place
    with pytest.raises(ValueError, match="NaN"):
        landmark_residual(np.full((5, 2), np.nan), ARC)
    with pytest.raises(ValueError, match="5"):
        landmark_residual(np.zeros((4, 2)), ARC)


def test_sdk_reference_values():
    """Fixed inputs and their values: docs/runtime.md quotes them for the C++ / TS SDKs."""
    lm = np.array([[106.772, 111.625], [145.867, 111.411], [124.32, 135.35], [110.753, 155.892], [141.391, 155.573]])
    assert landmark_residual(lm, ARC) == pytest.approx(0.03062103, abs=1e-8)
    assert landmark_residual(lm[[0, 1, 2, 4, 3]], ARC) == pytest.approx(0.47459928, abs=1e-8)


def test_calibration_is_factor_times_percentile_and_needs_enough_faces(rng):
    v = rng.uniform(0.02, 0.2, 400)
    t = calibrate_landmark_thresholds(np.concatenate([v, [np.nan]]))
    for mode, (p, f) in LANDMARK_PERCENTILES.items():
        assert t[mode] == pytest.approx(f * np.percentile(v, p), abs=1e-4)
    assert t["enroll"] < t["verify"]  # enrolment stricter
    with pytest.raises(ValueError, match="at least 50 faces"):
        calibrate_landmark_thresholds(v[: MIN_FACES_TO_CALIBRATE - 1])


def test_gate_checks_landmark_residual_only_when_the_template_is_known(rng):
    crop = rng.integers(0, 255, size=(112, 112, 3), dtype=np.uint8)
    assert "landmark_residual" not in measure(crop, ARC * 2)
    good = QualityGate().assess(measure(crop, ARC * 2, template=ARC), "verify")
    check = {c.name: c for c in good.checks}["landmark_residual"]
    assert check.passed and check.value < 1e-6 and check.threshold == DEFAULT_THRESHOLDS["verify"]["max_landmark_residual"]
    bad = QualityGate().assess(measure(crop, (ARC * 2)[[0, 1, 2, 4, 3]], template=ARC), "verify")
    assert "landmark_residual" in {c.name for c in bad.failed}
    assert any("shape of a face" in r for r in bad.reasons)


class _Embedder:
    """Only the geometry is under test: a fixed-direction embedder with the reference card."""

    def __init__(self, card):
        self.card, self.backend = card, "test"

    def embed(self, crops):
        e = np.zeros((len(crops), self.card.embedding_size), np.float32)
        e[:, 0] = 1
        return e


@pytest.fixture(scope="module")
def lfw_faces(shared, yunet):
    from edgeface.core.imageio import read_image

    root = shared / "datasets" / "lfw-dev" / "images"
    people = sorted(p.name for p in root.iterdir())[::60][:30]
    faces = []
    for p in people:
        f = sorted((root / p).glob("*.jpg"))[0]
        dets = yunet.detect(read_image(str(f)).pixels)
        if dets:
            faces.append((str(f), max(dets, key=lambda d: d.score).landmarks.astype(np.float64)))
    assert len(faces) >= 25
    return faces


@pytest.mark.shared
@pytest.mark.parametrize("template", ["arcface_112x112", "dlib_150x150"])
def test_real_faces_pass_and_corrupted_landmarks_are_refused(lfw_faces, template):
    from edgeface.core.card import ModelCard
    from edgeface.runtime.face import Face, FaceRecognizer, Rejection

    h, w = TEMPLATES[template][1]
    card = ModelCard(name="geom", arch="test", input_size=(h, w), embedding_size=8, template=template, licence="test")
    rec = FaceRecognizer(_Embedder(card), thresholds={"1e-3": 0.5}, embedding_quality=False)
    files = [f for f, _ in lfw_faces]
    real = rec.analyze(files, landmarks=[lm for _, lm in lfw_faces], mode="verify")
    for r in real:  # other checks may refuse a dark or small photo; the geometry check never does
        report = r.quality if isinstance(r, Face) else r.quality
        assert report is not None, r
        check = {c.name: c for c in report.checks}["landmark_residual"]
        assert check.passed and check.value < 0.2, (r.source, check)
    rng = np.random.default_rng(4)
    for f, lm in lfw_faces:
        bad = corruptions(lm, rng)
        results = rec.analyze([f] * len(bad), landmarks=list(bad.values()), mode="verify")
        for what, r in zip(bad, results):
            assert isinstance(r, Rejection) and r.reason == "quality", (f, what, r)
            assert "landmark_residual" in {c.name for c in r.quality.failed}, (f, what, r.detail)


def test_manifest_range_of_max_landmark_residual(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgeface.runtime.bundle import BundleError, load_bundle
    from tiny_bundle import make_tiny_bundle, read, reseal

    d = make_tiny_bundle(tmp_path / "b")
    meta = read(d)
    meta["quality"] = {"verify": {"max_landmark_residual": 0.2}, "enroll": {"max_landmark_residual": 0.18}}
    reseal(d, meta)
    b = load_bundle(d)
    assert b.quality["verify"]["max_landmark_residual"] == 0.2
    for bad in (1.5, -0.1, "0.2", True):
        meta["quality"] = {"verify": {"max_landmark_residual": bad}}
        reseal(d, meta)
        with pytest.raises(BundleError) as exc:
            load_bundle(d)
        assert exc.value.kind in ("quality", "schema"), (bad, exc.value.kind, str(exc.value))
        assert "max_landmark_residual" in str(exc.value) or "quality" in str(exc.value)
    json.dumps(meta)
