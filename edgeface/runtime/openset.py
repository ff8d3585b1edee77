"""Open-set identification thresholds: a one-to-one FAR is not the rate at which a stranger is
identified as someone. Searching a gallery of N people, a stranger is falsely identified when
his best score reaches the threshold; with N independent comparisons at per-comparison FAR f,

    FPIR(N) = 1 - (1 - f) ** N          (≈ N·f while N·f is small)

so a target FPIR at gallery size N needs f = 1 - (1 - FPIR) ** (1 / N), read off the bundle's
FAR curve (thresholds.far_curve: thresholds at FAR 1e-1 ... 1e-5 calibrated on people disjoint
from the reported sets). benchmarks/fpir_gallery.py measures FPIR against this prediction on
galleries of 10 to 10,000 people. Numpy only (runs on devices).
"""
from __future__ import annotations

import math


def far_for_fpir(fpir: float, gallery_size: int) -> float:
    """Per-comparison FAR at which N independent comparisons give FPIR."""
    if not 0 < fpir < 1:
        raise ValueError(f"target FPIR must be between 0 and 1, got {fpir}")
    if gallery_size < 1:
        raise ValueError("the gallery is empty: enrol people before choosing a threshold for a target FPIR")
    return -math.expm1(math.log1p(-fpir) / gallery_size)


def fpir_for_far(far: float, gallery_size: int) -> float:
    """The FPIR that N independent comparisons at per-comparison FAR reach (the inverse)."""
    return -math.expm1(gallery_size * math.log1p(-far))


def threshold_at_far(curve: list[dict], far: float) -> float:
    """Threshold for `far` from a FAR curve [{far, threshold}, ...], interpolated linearly in
    log10(FAR) between calibrated points. Above the curve's largest FAR it returns that point's
    threshold (stricter than asked: fewer false identifications, never more); below its smallest
    it refuses (a FAR finer than the calibration's impostor pairs resolve is not known)."""
    pts = sorted(((float(p["far"]), float(p["threshold"])) for p in curve), reverse=True)  # FAR falling, threshold rising
    if not pts:
        raise ValueError("no FAR curve: export the bundle with this kit version (thresholds.far_curve)")
    hi_far, lo_far = pts[0][0], pts[-1][0]
    if far > hi_far:
        return pts[0][1]
    if far < lo_far:
        raise ValueError(f"FAR {far:.2e} is outside the calibrated range {lo_far:.0e}..{hi_far:.0e}: the gallery is too large (or the "
                         "target FPIR too small) for the calibration's impostor pairs; choose a larger target FPIR")
    for (f1, t1), (f2, t2) in zip(pts, pts[1:]):
        if f2 <= far <= f1:
            if f1 == f2:
                return t2
            w = (math.log10(far) - math.log10(f1)) / (math.log10(f2) - math.log10(f1))
            return t1 + w * (t2 - t1)
    return pts[-1][1] if far == lo_far else pts[0][1]


def threshold_for_fpir(curve: list[dict], fpir: float, gallery_size: int) -> tuple[float, float]:
    """(threshold, per-comparison FAR) for a target FPIR at this gallery size."""
    far = far_for_fpir(fpir, gallery_size)
    return threshold_at_far(curve, far), far
