import numpy as np
import pytest

from edgeface.runtime.quality import DEFAULT_THRESHOLDS, QualityGate, laplacian_variance, measure, merge_thresholds

FRONTAL = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])


def test_bundle_quality_section_flat_and_per_mode():
    # the export side's key names, with a provenance note
    t = merge_thresholds({"source": "kit defaults", "min_detection_score": 0.7, "max_abs_yaw_deg": 40.0, "min_interocular_px": 35})
    assert t["verify"]["min_detector_score"] == 0.7 and t["verify"]["max_abs_yaw"] == 40.0
    # enrolment never becomes looser than verification
    assert t["enroll"]["max_abs_yaw"] == min(DEFAULT_THRESHOLDS["enroll"]["max_abs_yaw"], 40.0)
    assert t["enroll"]["min_interocular"] == 35
    t = merge_thresholds({"verify": {"min_contrast": 5}, "enroll": {"min_contrast": 50}})
    assert t["verify"]["min_contrast"] == 5 and t["enroll"]["min_contrast"] == 50
    with pytest.raises(ValueError, match="unknown key 'min_sharpnes'"):
        merge_thresholds({"min_sharpnes": 3})
    with pytest.raises(ValueError, match="must be a number"):
        merge_thresholds({"min_contrast": "high"})


def test_checks_report_values_and_fail_with_reasons(rng):
    crop = rng.integers(0, 255, size=(112, 112, 3), dtype=np.uint8)
    m = measure(crop, FRONTAL * 3, detector_score=0.95, flip_similarity=0.97)
    rep = QualityGate().assess(m, "verify")
    by = {(c.name, c.kind): c for c in rep.checks}
    assert by[("sharpness", "min")].value == pytest.approx(laplacian_variance(crop @ np.array([0.299, 0.587, 0.114])), rel=1e-4)
    assert by[("abs_yaw", "max")].value < 5 and rep.passed
    dark = (crop // 10).astype(np.uint8)
    rep = QualityGate().assess(measure(dark, FRONTAL * 3), "verify")
    assert not rep.passed and any("too dark" in r for r in rep.reasons)
    assert "detector_score" not in {c.name for c in rep.checks}  # not given: not checked
    # turning the head: nose moves off the midline
    turned = FRONTAL.copy() * 3
    turned[2, 0] += 0.45 * (turned[1, 0] - turned[0, 0])
    rep = QualityGate().assess(measure(crop, turned, flip_similarity=0.5), "enroll")
    failed = {c.name for c in rep.failed}
    assert {"abs_yaw", "flip_similarity"} <= failed
    with pytest.raises(ValueError, match="mode"):
        QualityGate().assess(m, "identify")


def test_laplacian_variance_drops_with_blur(rng):
    import cv2

    img = rng.integers(0, 255, size=(112, 96), dtype=np.uint8)
    values = [laplacian_variance(cv2.GaussianBlur(img, (0, 0), s) if s else img) for s in (0, 1, 2, 4)]
    assert values == sorted(values, reverse=True)


def test_flip_thresholds_are_the_calibration_percentiles(rng):
    from edgeface.runtime.quality import FLIP_PERCENTILES, calibrate_flip_thresholds

    v = rng.uniform(0.8, 1.0, 300)
    with_nan = np.concatenate([v, [np.nan, np.nan]])
    t = calibrate_flip_thresholds(with_nan)
    assert t == {m: pytest.approx(np.percentile(v, p), abs=1e-4) for m, p in FLIP_PERCENTILES.items()}
    assert t["enroll"] > t["verify"]  # enrolment stricter
    assert np.mean(v < t["verify"]) == pytest.approx(FLIP_PERCENTILES["verify"] / 100, abs=0.01)
    with pytest.raises(ValueError, match="at least 50 faces"):
        calibrate_flip_thresholds(np.concatenate([v[:49], [np.nan] * 10]))
    with pytest.raises(ValueError, match="unknown modes"):
        calibrate_flip_thresholds(v, {"verfiy": 5})


def test_bundle_quality_section_uses_the_runtime_names_and_values():
    """One naming: what the exporter writes is exactly what the runtime applies, per mode."""
    from edgeface.export.bundle_writer import quality_defaults
    from edgeface.runtime.quality import DEFAULT_THRESHOLDS

    q = quality_defaults()
    assert set(q) == {"source", "verify", "enroll"}
    t = merge_thresholds(q)
    assert t == DEFAULT_THRESHOLDS
    for mode in ("verify", "enroll"):
        assert set(q[mode]) == set(DEFAULT_THRESHOLDS[mode])  # no alias spelling left
