"""Open-set thresholds: a target FPIR at the gallery's current size (runtime.openset, identify --fpir)."""
import numpy as np
import pytest

from edgeface.runtime.openset import far_for_fpir, fpir_for_far, threshold_at_far, threshold_for_fpir

CURVE = [{"far": 1e-2, "threshold": 0.30}, {"far": 1e-3, "threshold": 0.40}, {"far": 1e-4, "threshold": 0.50}]


def test_fpir_and_far_are_inverse_and_near_n_times_far():
    for n in (1, 10, 100, 10_000):
        for f in (1e-5, 1e-4, 1e-3 if n < 10_000 else 2e-4):  # FPIR must stay below 1 in float64
            assert far_for_fpir(fpir_for_far(f, n), n) == pytest.approx(f, rel=1e-6)
    assert far_for_fpir(0.01, 1) == pytest.approx(0.01)
    assert fpir_for_far(1e-5, 100) == pytest.approx(1e-3, rel=1e-3)  # N·f while small
    assert fpir_for_far(1e-3, 10_000) == pytest.approx(1 - np.exp(-10), rel=1e-3)  # far from N·f = 10
    with pytest.raises(ValueError, match="between 0 and 1"):
        far_for_fpir(1.5, 10)
    with pytest.raises(ValueError, match="empty"):
        far_for_fpir(0.01, 0)


def test_threshold_at_far_interpolates_in_log_far_and_never_extrapolates():
    assert threshold_at_far(CURVE, 1e-3) == pytest.approx(0.40)
    assert threshold_at_far(CURVE, 10 ** -2.5) == pytest.approx(0.35)
    assert threshold_at_far(CURVE[::-1], 1e-4) == pytest.approx(0.50)  # order of the list does not matter
    with pytest.raises(ValueError, match="outside the calibrated range"):
        threshold_at_far(CURVE, 1e-5)
    assert threshold_at_far(CURVE, 0.05) == pytest.approx(0.30)  # above the curve: its strictest known end, never lower
    with pytest.raises(ValueError, match="no FAR curve"):
        threshold_at_far([], 1e-3)
    # A larger gallery needs a higher threshold for the same FPIR.
    t10, f10 = threshold_for_fpir(CURVE, 0.01, 10)
    t90, f90 = threshold_for_fpir(CURVE, 0.01, 90)
    assert f10 == pytest.approx(1.005e-3, rel=1e-3) and t90 > t10


def test_threshold_for_fpir_achieves_it_on_simulated_galleries():
    """The selection rule end to end on i.i.d. impostor scores: FAR curve from 2M calibration
    impostors (verify.far_curve, as an export writes it), then strangers searched against
    galleries of 50 and 500: the measured FPIR lands near the target."""
    from edgeface.export.verify import far_curve

    rng = np.random.default_rng(0)
    curve = far_curve(rng.normal(0, 0.12, 2_000_000).astype(np.float32))
    assert [p["far"] for p in curve][:3] == [0.1, 0.03, 0.01] and curve[-1]["far"] == 1e-5
    for n, target in ((50, 0.05), (500, 0.05)):
        thr, _ = threshold_for_fpir(curve, target, n)
        best = rng.normal(0, 0.12, (4000, n)).max(axis=1)
        measured = float(np.mean(best >= thr))
        assert abs(measured - target) < 0.015, (n, measured)


@pytest.mark.slow
def test_identify_with_a_target_fpir_uses_the_gallery_size(reference_model, yunet, shared, tmp_path):
    import torch

    from edgeface.models.embedder import TorchEmbedder
    from edgeface.runtime.face import UNKNOWN, FaceRecognizer

    torch.set_num_threads(2)
    model, card = reference_model
    root = shared / "datasets" / "lfw-dev" / "images"
    people = ["Hugo_Chavez", "Jacques_Chirac", "Laura_Bush"]
    rec = FaceRecognizer(TorchEmbedder(model, card, device="cpu"), gallery=tmp_path / "g.db", detector=yunet, thresholds={"1e-3": 0.4}, far_curve=CURVE)
    for p in people:
        assert rec.enroll(p, sorted(str(f) for f in (root / p).glob("*.jpg"))[:3]).enrolled
    small, far_small = rec.threshold_for_fpir(0.01)
    assert far_small == pytest.approx(far_for_fpir(0.01, 3)) and small == pytest.approx(threshold_at_far(CURVE, far_small))
    res = rec.identify(sorted(str(f) for f in (root / "Jacques_Chirac").glob("*.jpg"))[10], fpir=0.01)
    assert res.name == "Jacques_Chirac" and res.fpir == 0.01 and res.gallery_size == 3 and res.threshold == pytest.approx(small)
    assert res.to_dict()["fpir"] == 0.01
    stranger = rec.identify(sorted(str(f) for f in (root / "Andre_Agassi").glob("*.jpg"))[0], fpir=0.01)
    assert stranger.name == UNKNOWN
    # 60 more people enrolled: the same FPIR needs a higher threshold.
    vecs = np.random.default_rng(0).standard_normal((60, card.embedding_size)).astype(np.float32)
    for k, v in enumerate(vecs):
        rec.gallery.add(f"extra{k}", v / np.linalg.norm(v))
    large, _ = rec.threshold_for_fpir(0.01)
    assert large > small
    with pytest.raises(ValueError, match="outside the calibrated range"):
        rec.threshold_for_fpir(1e-4)  # 63 people at FPIR 1e-4 need FAR 1.6e-6, below the curve's 1e-4
