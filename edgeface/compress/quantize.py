"""Quantization's one home: `quantize(model, calibration_set, float_scope, config)`.

The front door for int8 post-training quantization with NNCF (an ONNX graph or an OpenVINO
model) and with PyTorch 2 export quantization (PT2E, a torch face embedder, for TFLite), and for
quantization-aware training (QAT: NNCF fake-quantizers retrained to the float embeddings). The
export converters call it for every int8 target; `edgeface quantize` calls it; compress never
imports export.

The int8 "keep in float" rule is FloatScope, in one place: which conv / linear layers, in
execution order, stay float. Every quantizer reads its own layers (ONNX nodes, OpenVINO ops, torch
modules) and asks FloatScope which of them to leave alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .float_scope import FloatScope

PRECISIONS = ("fp32", "fp16", "int8")
METHODS = ("nncf", "pt2e", "qat")

# The layers each quantizer counts, per graph kind: the ops whose int8 rounding the scope is about.
LAYER_OPS = {"onnx": ("Conv", "Gemm", "MatMul"), "openvino": ("Convolution", "GroupConvolution", "MatMul")}


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize: method (nncf | pt2e | qat) and the method's own options (pt2e: card,
    activation_observer, mirror_calibration, sequential_calibration, and train_faces / steps / lr for
    PT2E's own QAT; qat: card, train_faces, steps, lr, batch_size)."""

    method: str = "nncf"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class CalibrationSet:
    """Aligned uint8 faces (N, H, W, 3) and how one batch of them is fed to the model (`feed`:
    identity for a graph with the normalisation inside; normalise, or name the input, otherwise)."""

    faces: np.ndarray
    feed: Callable | None = None  # None: the faces as they are

    def __len__(self) -> int:
        return 0 if self.faces is None else len(self.faces)


def quantize(model, calibration_set: CalibrationSet | np.ndarray, float_scope: FloatScope = FloatScope(), config: QuantizeConfig = QuantizeConfig()):
    """int8 `model` calibrated on `calibration_set`, the layers `float_scope` names left in float.

    nncf: `model` is an onnx.ModelProto or an openvino.Model; returns (quantized model, kept_in_float,
    settings): the settings NNCF ran with, chosen from the graph (nncf_settings), and why.
    pt2e: `model` is a torch face embedder; returns (quantized FaceEmbeddingGraph, quantizer, info).
    qat: `model` is a torch face embedder; returns (fake-quantized torch model, info)."""
    if not isinstance(calibration_set, CalibrationSet):
        calibration_set = CalibrationSet(calibration_set)
    if calibration_set.faces is None or len(calibration_set) == 0:
        raise ValueError("int8 needs calibration faces")
    if config.method == "nncf":
        return _nncf(model, calibration_set, float_scope)
    if config.method == "pt2e":
        from .pt2e import pt2e_int8

        opts = dict(config.options)
        card = opts.pop("card")
        return pt2e_int8(model, card, calibration_set.faces, float_scope=float_scope, **opts)
    if config.method == "qat":
        from .qat import quantization_aware_training

        opts = dict(config.options)
        card = opts.pop("card")
        return quantization_aware_training(model, card, calibration_set.faces, float_scope=float_scope, **opts)
    raise ValueError(f"unknown quantization method {config.method!r}; choose from {', '.join(METHODS)}")


def nncf_ignored_scope(kind: str, model, float_scope: FloatScope) -> tuple[object, list[str]]:
    """What NNCF must leave in float: the layers float_scope names, and always every op after
    the last conv (the L2 normalisation: x*x, sum, sqrt, clip, div). NNCF quantizes their inputs
    by default, which made the int8 ONNX / OpenVINO outputs 0.995-1.27 long instead of unit
    vectors (reference MobileFaceNet, LFW-dev crops) — invisible to a cosine check, wrong for an
    app that compares raw outputs by dot product as the contract says."""
    import nncf

    if kind == "onnx":
        ops = [(n.name, n.op_type) for n in model.graph.node]
    else:
        ops = [(op.get_friendly_name(), op.get_type_name()) for op in model.get_ordered_ops()
               if op.get_type_name() not in ("Constant", "Parameter", "Result")]
    layers = [i for i, (_, t) in enumerate(ops) if t in LAYER_OPS[kind]]
    keep = float_scope.select([ops[i][0] for i in layers])
    tail = [name for name, _ in ops[layers[-1] + 1 :]] if layers else []
    return nncf.IgnoredScope(names=keep + tail, validate=False), keep


# Ops that make a graph transformer-like for int8 (ONNX op types and OpenVINO type names):
# LayerNorm (OpenVINO: MVN), softmax (attention), GELU (or its Erf form). Measured on EdgeFace-XXS
# (ConvNeXt-style blocks, LayerNorm, GELU, channel attention): NNCF's default CNN settings gave
# cosine to float 0.306 (ONNX) / 0.157 (OpenVINO) and LFW-dev 83.97 / 70.23 %; model_type
# TRANSFORMER, whose patterns leave LayerNorm, softmax and GELU with their inputs in float and apply
# SmoothQuant to the MatMuls, gave cosine 0.979 (issue 38).
TRANSFORMER_OPS = {"LayerNormalization": "LayerNorm", "MVN": "LayerNorm", "Softmax": "softmax", "SoftMax": "softmax",
                   "Gelu": "GELU", "Erf": "GELU (erf)"}


def graph_ops(kind: str, model) -> list[str]:
    """The op types of an ONNX graph or an OpenVINO model, in order."""
    if kind == "onnx":
        return [n.op_type for n in model.graph.node]
    return [op.get_type_name() for op in model.get_ordered_ops()]


def nncf_settings(kind: str, model) -> dict:
    """NNCF's model type for this graph, picked from its ops, with the reason: {"model_type":
    "transformer" | "cnn (NNCF default)", "why": ..., "transformer_ops": {op: count}}."""
    found: dict[str, int] = {}
    for t in graph_ops(kind, model):
        if t in TRANSFORMER_OPS:
            found[t] = found.get(t, 0) + 1
    if not found:
        return {"model_type": "cnn (NNCF default)", "transformer_ops": {},
                "why": "no LayerNorm, softmax or GELU in the graph: NNCF's default patterns (measured on MobileFaceNet and dlib's ResNet)"}
    what = ", ".join(f"{n} x {TRANSFORMER_OPS[t]} ({t})" for t, n in found.items())
    return {"model_type": "transformer", "transformer_ops": found,
            "why": (f"the graph has {what}: NNCF model_type TRANSFORMER keeps LayerNorm, softmax and GELU (and their inputs) in float and "
                    "smooths activation outliers into the MatMul weights (SmoothQuant); with NNCF's CNN defaults EdgeFace-XXS measured "
                    "cosine to float 0.31 (ONNX) / 0.16 (OpenVINO), with TRANSFORMER 0.979")}


def _nncf(model, calibration_set: CalibrationSet, float_scope: FloatScope):
    import nncf

    kind = "onnx" if hasattr(model, "graph") and hasattr(model.graph, "node") else "openvino"
    scope, kept = nncf_ignored_scope(kind, model, float_scope)
    settings = nncf_settings(kind, model)
    extra = {"model_type": nncf.ModelType.TRANSFORMER} if settings["model_type"] == "transformer" else {}
    faces = calibration_set.faces
    dataset = nncf.Dataset([faces[i : i + 1] for i in range(len(faces))], calibration_set.feed)
    return nncf.quantize(model, dataset, subset_size=len(faces), ignored_scope=scope, **extra), kept, settings


def compare_embeddings(reference: np.ndarray, other: np.ndarray) -> dict:
    """Mean, minimum and 1st-percentile cosine between row-paired unit embeddings (both (N, D))."""
    cos = np.sum(reference * other, axis=1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()), "p01_cosine": float(np.quantile(cos, 0.01))}
