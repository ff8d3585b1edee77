"""fp16 and int8 (NNCF post-training quantization) of a torch face embedder, measured.

The conversions themselves are the export package's (edgeface.export.converters: one ONNX
graph with uint8 NHWC input and unit-vector output; int8 = NNCF QDQ with per-channel weights,
calibrated on aligned faces, optionally keeping the embedding projection in float), so
`edgeface quantize` and `edgeface export` produce the same files. This module adds the
measurements: size, accuracy before/after on LFW-dev, cosine to the fp32 embeddings.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import nn

from ..card import ModelCard

PRECISIONS = ("fp32", "fp16", "int8")


def export_precision(model: nn.Module, card: ModelCard, precision: str, out_dir: str | os.PathLike, calib: np.ndarray | None = None, keep_float_ends: bool = True,
                     compact: bool = True) -> Path:
    """Write out_dir/model.onnx at `precision`; returns its path."""
    from ..export.converters import ExportSource, onnx_fp16, onnx_fp32, onnx_int8

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = ExportSource(card=card, name=card.name, sha256="", kind="torch", net=model.eval())
    if precision == "int8":
        if calib is None or len(calib) == 0:
            raise ValueError("int8 quantization needs calibration faces (--calib DIR with face images)")
        conv = onnx_int8(src, out_dir, calib, keep_float_ends=keep_float_ends, compact=compact)
    elif precision == "fp16":
        conv = onnx_fp16(src, out_dir, calib)
    else:
        conv = onnx_fp32(src, out_dir, calib)
    return out_dir / conv.model_file if hasattr(conv, "model_file") else out_dir / "model.onnx"


def compare_embeddings(reference: np.ndarray, other: np.ndarray) -> dict:
    cos = np.sum(reference * other, axis=1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()), "p01_cosine": float(np.quantile(cos, 0.01))}
