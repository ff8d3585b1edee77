"""YuNet face detection with 5 landmarks, run through ONNX Runtime (no OpenCV needed).

The model (OpenCV Zoo's face_detection_yunet_2023mar.onnx) takes a fixed 1x3x640x640 BGR
0-255 input and emits, per stride 8/16/32, class and objectness scores, a box and 5
keypoints relative to each grid cell. Decoding and NMS here follow OpenCV's
FaceDetectorYN so the two agree (tests check it). Images are letterboxed: scaled so the
longer side is 640 px, padded bottom/right.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 640
STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # x1, y1, x2, y2 in image pixels
    landmarks: np.ndarray  # (5, 2): right eye, left eye, nose, right mouth, left mouth
    score: float

    @property
    def size(self) -> float:
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[int]:
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / (areas[i] + areas[order[1:]] - inter + 1e-9)
        order = order[1:][iou <= iou_thr]
    return keep


class YuNetDetector:
    """YuNet through ONNX Runtime. `detect(image_bgr_or_rgb)` returns detections, best first."""

    def __init__(self, model_path: str | os.PathLike, score_threshold: float = 0.6, nms_threshold: float = 0.3, threads: int = 0):
        from .ort_session import onnxruntime_session

        model_path = os.fspath(model_path)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"YuNet model not found: {model_path} (pass the path to face_detection_yunet_2023mar.onnx)")
        self.session = onnxruntime_session(model_path, threads)
        inp = self.session.get_inputs()[0]
        if list(inp.shape) != [1, 3, INPUT_SIZE, INPUT_SIZE]:
            raise ValueError(f"{model_path}: expected a YuNet model with input 1x3x640x640, got {inp.shape}")
        self.input_name = inp.name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.model_path = model_path
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        # Grid-cell origins per stride, computed once.
        self._grids = {}
        for s in STRIDES:
            n = INPUT_SIZE // s
            ys, xs = np.mgrid[0:n, 0:n]
            self._grids[s] = (xs.ravel().astype(np.float32), ys.ravel().astype(np.float32))

    def _letterbox(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        from .imageio import resize

        h, w = image_bgr.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nh, nw = min(INPUT_SIZE, round(h * scale)), min(INPUT_SIZE, round(w * scale))
        canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)
        canvas[:nh, :nw] = resize(image_bgr, (nh, nw))
        return canvas.transpose(2, 0, 1)[None], scale

    def detect(self, image: np.ndarray, color_order: str = "RGB", score_threshold: float | None = None) -> list[Detection]:
        """All faces above the score threshold, highest score first, in image coordinates."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect: expected an HxWx3 uint8 image, got {getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}")
        bgr = image[:, :, ::-1] if color_order == "RGB" else image
        blob, scale = self._letterbox(np.ascontiguousarray(bgr))
        outs = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob})))
        thr = self.score_threshold if score_threshold is None else score_threshold
        boxes, kpss, scores = [], [], []
        for s in STRIDES:
            cls = np.clip(outs[f"cls_{s}"][0, :, 0], 0, 1)
            obj = np.clip(outs[f"obj_{s}"][0, :, 0], 0, 1)
            score = np.sqrt(cls * obj)
            sel = np.flatnonzero(score >= thr)
            if sel.size == 0:
                continue
            gx, gy = self._grids[s][0][sel], self._grids[s][1][sel]
            bb = outs[f"bbox_{s}"][0, sel]
            cx, cy = (gx + bb[:, 0]) * s, (gy + bb[:, 1]) * s
            w, h = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
            kp = outs[f"kps_{s}"][0, sel].reshape(-1, 5, 2)
            kpss.append(np.stack([(kp[:, :, 0] + gx[:, None]) * s, (kp[:, :, 1] + gy[:, None]) * s], 2))
            scores.append(score[sel])
        if not boxes:
            return []
        b, k, sc = np.concatenate(boxes), np.concatenate(kpss), np.concatenate(scores)
        keep = _nms(b, sc, self.nms_threshold)
        return [Detection(b[i] / scale, k[i] / scale, float(sc[i])) for i in keep]


def pick_primary(detections: list[Detection], image_shape: tuple[int, ...]) -> Detection | None:
    """The intended face when several are found: large and near the image centre.

    InsightFace's rule (box area minus twice the squared offset from the centre), which on
    LFW picks the centred subject over bystanders.
    """
    if not detections:
        return None
    h, w = image_shape[:2]
    centre = np.array([w / 2, h / 2])

    def value(d: Detection) -> float:
        area = (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])
        mid = np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2])
        return float(area - 2.0 * np.sum((mid - centre) ** 2))

    return max(detections, key=value)


# -- orientation --------------------------------------------------------------------------
# YuNet was trained on upright faces, yet it finds most faces turned 90°, 180° or 270° too and
# labels their 5 landmarks as if the face were upright (eyes above the mouth, roll 0-10°), so no
# landmark rule sees the turn, and the turned crops of different people match each other
# (issue 37: 88 of 1,350 pairs of different people at FAR 1e-3, upside down). What does tell:
# the detector scores the same face higher the right way up. orientation_scores puts the face's
# surroundings, at two context sizes, turned by 0°, 90°, 180° and 270° into 8 cells of one
# 640x640 detector input (one extra detection, whatever the image size) and reads the best score
# near each cell's centre; the face is upright when, at both sizes, the cell as it is scores
# highest. On 200 LFW-dev photos x 4 turns (benchmarks/runtime_orientation.py) that held for all
# 200 upright faces (margin >= 0.021) and for 1 of the 487 turned detections (not the turned face:
# a bystander's chin at the image border); one context of 1.6 in a 2x2 mosaic missed 5, a second
# full-image detection at 180° missed 176 (it sees upside-down faces only), landmark-geometry rules
# keeping 99 % of upright faces caught at most 102. Cost: ~21 ms CPU a face (one YuNet run).
ORIENTATION_CONTEXTS = (1.25, 2.2)  # side of the square around the face / the box's longer side
_GRID = 3  # cells per side of the mosaic (8 of 9 used)
_CELL = 640 // _GRID


def _square_around(image: np.ndarray, box: np.ndarray, side: int, context: float) -> np.ndarray:
    """The square of `context` x the box's longer side centred on the box, zero-padded where it
    leaves the image, resized to side x side."""
    from .imageio import resize

    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    h, w = image.shape[:2]
    n = int(round(max(x2 - x1, y2 - y1, 1.0) * context))
    n = max(1, min(n, 4 * max(h, w)))  # a box far larger than the image (a hostile detector): bounded
    a0, b0 = int(round((x1 + x2) / 2 - n / 2)), int(round((y1 + y2) / 2 - n / 2))
    canvas = np.zeros((n, n, 3), np.uint8)
    xa, ya, xb, yb = max(a0, 0), max(b0, 0), min(a0 + n, w), min(b0 + n, h)
    if xb > xa and yb > ya:
        canvas[ya - b0 : yb - b0, xa - a0 : xb - a0] = image[ya:yb, xa:xb, :3]
    return resize(canvas, (side, side))


def orientation_scores(detector, image: np.ndarray, det: Detection) -> np.ndarray:
    """(len(ORIENTATION_CONTEXTS), 4): the detector's best score for the face of `det` turned by 0°,
    90°, 180° and 270° (counter-clockwise) at each context size (0.0 where it finds no face there),
    from one detection over a mosaic of the turned squares. `detector` is anything with
    .detect(HxWx3 uint8 image) -> [Detection] (YuNet: its score floor is lowered to 0.3 here so that
    every orientation gets a score)."""
    mosaic = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    cells = []
    for ci, context in enumerate(ORIENTATION_CONTEXTS):
        sq = _square_around(image, det.box, _CELL, context)
        for k in range(4):
            r, c = divmod(4 * ci + k, _GRID)
            mosaic[r * _CELL : (r + 1) * _CELL, c * _CELL : (c + 1) * _CELL] = np.rot90(sq, k)
            cells.append((ci, k, (c + 0.5) * _CELL, (r + 0.5) * _CELL))
    dets = detector.detect(mosaic, score_threshold=0.3) if isinstance(detector, YuNetDetector) else detector.detect(mosaic)
    scores = np.zeros((len(ORIENTATION_CONTEXTS), 4))
    for d in dets:
        cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
        for ci, k, x0, y0 in cells:
            # only the face at the cell's centre (the one that was turned), not a bystander at its edge
            if abs(cx - x0) <= 0.2 * _CELL and abs(cy - y0) <= 0.2 * _CELL:
                scores[ci, k] = max(scores[ci, k], float(d.score))
    return scores
