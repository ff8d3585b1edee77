"""5-point face alignment: least-squares similarity transform and warping.

Numpy only (OpenCV is used for the warp when it is importable, with a numpy bilinear
fallback), so the on-device runtime and the evaluation share this exact code path.

Landmark order everywhere in edgeface is YuNet's / InsightFace's: right eye, left eye,
nose tip, right mouth corner, left mouth corner — "right" meaning the subject's right,
which appears on the image's left.
"""
from __future__ import annotations

import numpy as np

# Template landmarks in crop pixel coordinates, (x, y), same order as above.
# ArcFace / InsightFace 112x112 template.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# SphereFace / CosFace 112x96 template (the ArcFace one shifted 8 px left).
SPHEREFACE_112x96 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]],
    dtype=np.float64,
)

# dlib's 150x150 face chip (get_face_chip_details, padding 0.25) expressed in YuNet's 5 points:
# the mean position of YuNet's landmarks inside dlib's own chips of 1,500 CelebA-299 / AAF-8k
# faces (benchmarks/experiments/dlib_template.py -> benchmarks/results/dlib/template.json).
DLIB_150 = np.array(
    [[48.433, 45.8269], [101.2684, 45.5386], [75.6365, 77.6155], [52.5396, 101.6837], [98.0997, 101.3311]],
    dtype=np.float64,
)

# name -> (landmarks, (height, width) of the crop the landmarks refer to)
TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    "arcface_112x112": (ARCFACE_112, (112, 112)),
    "sphereface_112x96": (SPHEREFACE_112x96, (112, 96)),
    "dlib_150x150": (DLIB_150, (150, 150)),
}


def template_landmarks(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Template landmarks for crop `size` (h, w); scaled from the template's own size.

    Scaling keeps the face's proportions, so a 96x96 crop from the 112x112 template is the
    same framing at a lower resolution (MobileNet's resolution multiplier ρ).
    """
    if name not in TEMPLATES:
        raise KeyError(f"unknown alignment template {name!r}; known: {sorted(TEMPLATES)}")
    pts, (th, tw) = TEMPLATES[name]
    if size is None or tuple(size) == (th, tw):
        return pts.copy()
    h, w = size
    return pts * np.array([w / tw, h / th])


def check_landmarks(landmarks: np.ndarray, what: str = "landmarks") -> np.ndarray:
    """Return landmarks as a (5, 2) float64 array or raise a ValueError saying what is wrong."""
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.size != 10:
        raise ValueError(f"{what}: expected 5 (x, y) points, got an array of shape {arr.shape}")
    arr = arr.reshape(5, 2)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: contains NaN or infinite coordinates")
    return arr


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst.

    Umeyama (1991) closed form without reflection. Returns the 2x3 matrix M such that
    dst ≈ M @ [x, y, 1]. Raises ValueError for degenerate (collapsed) point sets.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"similarity_transform needs two (N>=2, 2) point sets of equal shape, got {src.shape} and {dst.shape}")
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / n
    if var_s < 1e-12:
        raise ValueError("similarity_transform: source points are all at the same place")
    cov = dc.T @ sc / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # forbid reflections: a mirrored face is not the same alignment
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / var_s
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def landmark_residual(landmarks: np.ndarray, template: np.ndarray) -> float:
    """How far 5 landmarks are from being a face: the RMS residual, in template pixels, of the
    least-squares similarity fit of the landmarks onto the template (the fit align_face uses),
    divided by the template's inter-ocular distance (|template[1] - template[0]|).

    0 for landmarks that are an exact rotated / scaled / shifted copy of the template; real faces
    stay below ~0.1; mirrored, swapped, collinear or wildly disproportionate points score high.
    The fit cannot reflect (a mirrored face is not an alignment), and the value is bounded: at
    worst the fit's scale goes to 0 and the residual is the template's own spread around its
    centroid (about 0.7 inter-ocular distances for the kit's templates).

    Closed form (2-D similarity = multiplication by one complex number a), in float64:
        p_i = landmark_i - mean(landmarks), q_i = template_i - mean(template)   (as complex x + iy)
        Spp = sum |p_i|^2,  Sqq = sum |q_i|^2,  C = sum conj(p_i) * q_i
        SSE = Sqq - |C|^2 / Spp      (Sqq when Spp == 0; clamped at 0 against rounding)
        landmark_residual = sqrt(SSE / 5) / |template[1] - template[0]|
    This equals the Umeyama fit of similarity_transform (same optimum); SDKs reproduce it with
    these exact sums in this order (docs/runtime.md).
    """
    p = check_landmarks(landmarks)
    q = check_landmarks(template, "template")
    iod = float(np.hypot(q[1, 0] - q[0, 0], q[1, 1] - q[0, 1]))
    if iod <= 0:
        raise ValueError("template: the two eye points coincide")
    p = p - p.mean(0)
    q = q - q.mean(0)
    spp = float((p**2).sum())
    sqq = float((q**2).sum())
    c_re = float((p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]).sum())  # Re sum conj(p) q
    c_im = float((p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum())  # Im sum conj(p) q
    sse = sqq if spp == 0.0 else sqq - (c_re * c_re + c_im * c_im) / spp
    return float(np.sqrt(max(sse, 0.0) / 5.0) / iod)


def _warp_numpy(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear inverse warp with zero border: the OpenCV-free fallback."""
    h, w = size
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    img = image if image.ndim == 3 else image[:, :, None]
    ih, iw = img.shape[:2]
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    out = np.zeros((h, w, img.shape[2]), dtype=np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xx, yy = x0 + dx, y0 + dy
            valid = ((xx >= 0) & (xx < iw) & (yy >= 0) & (yy < ih))[..., None]
            vals = img[np.clip(yy, 0, ih - 1), np.clip(xx, 0, iw - 1)].astype(np.float64)
            out += np.where(valid, vals, 0.0) * wx * wy
    if np.issubdtype(image.dtype, np.integer):
        out = np.clip(np.rint(out), 0, np.iinfo(image.dtype).max)
    out = out.astype(image.dtype)
    return out if image.ndim == 3 else out[:, :, 0]


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], use_opencv: bool = True) -> np.ndarray:
    """Warp `image` with the 2x3 `matrix` into a crop of `size` (h, w)."""
    if use_opencv:
        try:
            import cv2
        except ImportError:
            cv2 = None
        if cv2 is not None:
            h, w = size
            return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return _warp_numpy(image, matrix, size)


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: str = "arcface_112x112",
    size: tuple[int, int] | None = None,
    use_opencv: bool = True,
) -> np.ndarray:
    """Crop the face given by 5 landmarks onto an alignment template.

    image: HxW or HxWxC array (any colour order; it is preserved). Returns a (h, w[, C]) crop.
    """
    if image is None or not hasattr(image, "ndim") or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"align_face: expected an HxW or HxWxC image, got {getattr(image, 'shape', type(image))}")
    pts = check_landmarks(landmarks)
    if size is None:
        size = TEMPLATES[template][1] if template in TEMPLATES else None
    dst = template_landmarks(template, size)
    matrix = similarity_transform(pts, dst)
    return warp(image, matrix, tuple(size), use_opencv=use_opencv)


def estimate_pose(landmarks: np.ndarray) -> dict[str, float]:
    """Rough roll / yaw / pitch (degrees) from the 5 landmarks alone.

    Roll is the eye-line angle. Yaw and pitch come from where the nose sits relative to
    the eye and mouth midpoints, normalised by face width/height; they are proxies good
    enough to reject profile or strongly tilted faces, not a head-pose estimator.
    """
    p = check_landmarks(landmarks)
    re, le, nose, rm, lm = p
    eye_vec = le - re
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    eye_mid = (re + le) / 2
    mouth_mid = (rm + lm) / 2
    # Work in a frame rotated so the eye line is horizontal.
    c, s = np.cos(-np.radians(roll)), np.sin(-np.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    ex, nx, mx = rot @ eye_mid, rot @ nose, rot @ mouth_mid
    iod = max(float(np.linalg.norm(eye_vec)), 1e-6)
    yaw_ratio = (nx[0] - (ex[0] + mx[0]) / 2) / iod  # nose off the face's midline
    yaw = float(np.degrees(np.arcsin(np.clip(2.0 * yaw_ratio, -1, 1))))
    face_h = max(mx[1] - ex[1], 1e-6)
    pitch_ratio = (nx[1] - ex[1]) / face_h  # ≈0.55 for a frontal face on the ArcFace template
    pitch = float(np.degrees(np.arcsin(np.clip(2.0 * (pitch_ratio - 0.55), -1, 1))))
    return {"roll": roll, "yaw": yaw, "pitch": pitch, "interocular": iod}
