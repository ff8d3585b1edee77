import numpy as np
import pytest

from edgeface.core.align import (
    ARCFACE_112,
    SPHEREFACE_112x96,
    align_face,
    check_landmarks,
    estimate_pose,
    similarity_transform,
    template_landmarks,
    warp,
)


def _similarity(angle_deg, scale, tx, ty):
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (17, 2.3, 40, -12), (-35, 0.7, 120, 80), (90, 1.5, 300, 10)])
def test_similarity_recovers_known_transform(angle, scale, tx, ty):
    m = _similarity(angle, scale, tx, ty)
    src = ARCFACE_112
    est = similarity_transform(src, _apply(m, src))
    np.testing.assert_allclose(est, m, atol=1e-9)


def test_similarity_is_least_squares_under_noise(rng):
    m = _similarity(10, 1.8, 5, 7)
    src = rng.uniform(0, 200, (30, 2))
    dst = _apply(m, src) + rng.normal(0, 0.5, (30, 2))
    est = similarity_transform(src, dst)
    resid = np.sum((_apply(est, src) - dst) ** 2)
    # No perturbation of the estimate may fit better: it is the least-squares optimum.
    for _ in range(50):
        d = est + rng.normal(0, 1e-3, est.shape)
        d[:, :2] = est[:, :2]  # keep it a similarity; only translation perturbed
        assert np.sum((_apply(d, src) - dst) ** 2) >= resid - 1e-9
    assert abs(np.hypot(*est[0, :2]) - 1.8) < 0.02


def test_similarity_never_reflects():
    mirrored = ARCFACE_112 * np.array([-1, 1])
    est = similarity_transform(ARCFACE_112, mirrored)
    assert np.linalg.det(est[:, :2]) > 0


def test_degenerate_points_rejected():
    with pytest.raises(ValueError, match="same place"):
        similarity_transform(np.ones((5, 2)), ARCFACE_112)


def _blob_image(points, shape, sigma=1.6):
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), np.float64)
    for x, y in points:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _centroids(img, guesses, r=5):
    out = []
    ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    for gx, gy in guesses:
        m = ((xs - gx) ** 2 + (ys - gy) ** 2 <= r * r) * img.astype(np.float64)
        out.append([np.sum(m * xs) / m.sum(), np.sum(m * ys) / m.sum()])
    return np.array(out)


@pytest.mark.parametrize("template,size", [("arcface_112x112", (112, 112)), ("sphereface_112x96", (112, 96))])
@pytest.mark.parametrize("use_opencv", [True, False])
@pytest.mark.parametrize("angle,scale,tx,ty", [(12, 2.2, 60, 40), (-25, 1.4, 150, 90)])
def test_warp_puts_known_landmarks_on_template(template, size, use_opencv, angle, scale, tx, ty):
    """A synthetic 'face' whose 5 landmarks are known lands on the template within 0.5 px."""
    tpl = template_landmarks(template, size)
    m = _similarity(angle, scale, tx, ty)
    src = _apply(m, tpl)
    image = _blob_image(src, (420, 420), sigma=1.6 * scale)
    crop = align_face(image, src, template, size, use_opencv=use_opencv)
    assert crop.shape == size
    found = _centroids(crop, tpl)
    err = np.linalg.norm(found - tpl, axis=1)
    assert err.max() < 0.5, err


def test_numpy_warp_matches_opencv(rng):
    pytest.importorskip("cv2")
    img = rng.integers(0, 256, (200, 180, 3), dtype=np.uint8)
    m = _similarity(8, 0.6, 10, 5)
    a = warp(img, m, (112, 96), use_opencv=True).astype(int)
    b = warp(img, m, (112, 96), use_opencv=False).astype(int)
    assert np.mean(np.abs(a - b)) < 1.0  # both bilinear; OpenCV uses fixed-point weights


def test_template_scaling_and_unknown():
    np.testing.assert_allclose(template_landmarks("arcface_112x112", (56, 56)), ARCFACE_112 / 2)
    np.testing.assert_allclose(template_landmarks("sphereface_112x96"), SPHEREFACE_112x96)
    with pytest.raises(KeyError, match="unknown alignment template"):
        template_landmarks("nope")


@pytest.mark.parametrize("bad,msg", [(np.zeros((4, 2)), "5 \\(x, y\\) points"), (np.full((5, 2), np.nan), "NaN")])
def test_bad_landmarks_rejected(bad, msg):
    with pytest.raises(ValueError, match=msg):
        check_landmarks(bad)


def test_pose_of_frontal_and_rotated_face():
    frontal = estimate_pose(ARCFACE_112)
    assert abs(frontal["roll"]) < 1 and abs(frontal["yaw"]) < 5 and abs(frontal["pitch"]) < 10
    rolled = estimate_pose(_apply(_similarity(30, 1, 0, 0), ARCFACE_112))
    assert abs(rolled["roll"] - 30) < 1 and abs(rolled["yaw"]) < 5
    turned = ARCFACE_112.copy()
    turned[2, 0] += 20  # nose far towards one eye: a turned head
    assert abs(estimate_pose(turned)["yaw"]) > 30
