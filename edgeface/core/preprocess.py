"""Turning aligned uint8 crops into model input, exactly as the card says. Numpy only."""
from __future__ import annotations

import numpy as np

from .card import ModelCard


def check_faces(faces: np.ndarray, card: ModelCard) -> np.ndarray:
    """Validate a batch of aligned crops: (N, H, W, 3) uint8 at the card's input size."""
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[None]
    h, w = card.input_size
    if faces.ndim != 4 or faces.shape[1:] != (h, w, 3):
        raise ValueError(f"model {card.name!r} expects aligned faces of shape (N, {h}, {w}, 3), got {faces.shape}")
    if faces.dtype != np.uint8:
        raise ValueError(f"model {card.name!r} expects uint8 faces (0-255), got {faces.dtype}")
    return faces


def normalize(faces_rgb: np.ndarray, card: ModelCard, layout: str = "NCHW") -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> float32 in the card's colour order, (x - mean) / std."""
    faces = check_faces(faces_rgb, card).astype(np.float32)
    if card.color_order == "BGR":
        faces = faces[..., ::-1]
    elif card.color_order == "GRAY":
        gray = faces @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        faces = np.repeat(gray[..., None], 3, axis=-1)
    faces = (faces - np.asarray(card.mean, np.float32)) / np.asarray(card.std, np.float32)
    if layout == "NCHW":
        faces = faces.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(faces)


def l2_normalize(x: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Rows scaled to unit L2 length along the last axis, as float32 (norms below `eps` are divided by `eps`)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)
