"""Quantization-aware training (NNCF, torch) for when post-training int8 loses too much.

The model's BatchNorms are folded into its convs (what the deployed graph computes), NNCF
inserts int8 fake-quantizers calibrated on aligned faces (the same PTQ starting point as
export), then every weight and quantizer range is retrained for `steps` steps to reproduce
the fp32 model's own embeddings of training faces (1 - cosine: distillation from the float
model, no labels needed). The result is exported to ONNX with the weights stored int8
(fold_weight_quantize) and the remaining float parameters compacted, so the file is as small
as PTQ's.

Measured on the reference MobileFaceNet (docs/results/compression.md, Quantization;
benchmarks/results/quantize_qat_reference.json): with the first conv and the head float (the
default), 150 steps gave LFW-dev 98.53 % and cosine to fp32 mean 0.9969 / min 0.974 against
PTQ's 98.60 % and 0.9968 / 0.983 - no gain; with every layer int8 it raised held-out min cosine
0.941 -> 0.959 but not LFW (98.57 -> 98.43 %). PTQ already meets the int8 line there; QAT is
for models where it does not.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.card import ModelCard
from .float_scope import FloatScope, torch_ignored_scope


EXTENSION_ENV = "EDGEFACE_NNCF_EXTENSION"


def select_quantize_kernels() -> str:
    """Which kernels NNCF's torch fake-quantizers run on the CPU, decided before NNCF is used.

    NNCF compiles a C++ extension (torch.utils.cpp_extension: g++ + ninja) the first time a
    fake-quantizer runs, under a 60 s timeout; on a fresh, busy machine the compile can lose
    that race and the QAT run dies with multiprocessing.TimeoutError (issue 20: `make test`
    failed once this way). By default edgeface therefore installs NNCF's own pure-torch
    reference kernels (ReferenceQuantizedFunctions, the ones NNCF falls back to when the
    compile fails: same formulas, no compiler, no cache, no timeout). EDGEFACE_NNCF_EXTENSION=1
    lets NNCF compile and use its extension instead, with the timeout off unless
    NNCF_EXTENSION_LOAD_TIMEOUT is set. Returns "reference" or "extension"."""
    import os

    if os.environ.get(EXTENSION_ENV) == "1":
        os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
        return "extension"
    from nncf.torch.quantization import extensions
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    if extensions.QuantizedFunctionsCPU._loaded_namespace is None:
        extensions.QuantizedFunctionsCPU._loaded_namespace = ReferenceQuantizedFunctions
    return "reference" if extensions.QuantizedFunctionsCPU._loaded_namespace is ReferenceQuantizedFunctions else "extension"


def quantization_aware_training(
    model: nn.Module,
    card: ModelCard,
    calib: np.ndarray,
    train_faces: np.ndarray,
    steps: int = 150,
    lr: float = 1e-5,
    batch_size: int = 32,
    float_scope: FloatScope = FloatScope(),
    show_progress: bool = True,
) -> tuple[nn.Module, dict]:
    """NNCF int8 fake-quantized copy of `model`, retrained to its fp32 embeddings. Returns the
    quantized torch model and what was done (steps, loss at the start and end)."""
    import nncf

    kernels = select_quantize_kernels()
    from .finetune import distill, embed, to_tensor
    from .fold import execution_order, fold_batchnorm

    if calib is None or len(calib) == 0:
        raise ValueError("QAT needs calibration faces for the initial quantizer ranges")
    if steps > 0 and (train_faces is None or len(train_faces) < batch_size):
        raise ValueError(f"QAT needs at least {batch_size} training faces, got {0 if train_faces is None else len(train_faces)}")
    h, w = card.input_size
    net, folded = fold_batchnorm(copy.deepcopy(model).eval(), torch.zeros(1, 3, h, w))
    layers = execution_order(net, torch.zeros(1, 3, h, w))  # first and last as the forward pass runs them
    scope, keep = torch_ignored_scope(layers, float_scope)
    dataset = nncf.Dataset([to_tensor(calib[i : i + 1], card) for i in range(len(calib))])
    qnet = nncf.quantize(net, dataset, subset_size=len(calib), ignored_scope=scope)
    info = {"steps": int(steps), "lr": lr, "batch_size": batch_size, "batchnorms_folded": int(folded), "kept_in_float": keep,
            "calibration_faces": int(len(calib)), "training_faces": 0 if train_faces is None else int(len(train_faces)),
            "nncf_kernels": kernels}
    if steps > 0:
        teacher = embed(net, train_faces, card)  # the float model's own embeddings
        losses = distill(qnet, card, train_faces, teacher, epochs=steps * batch_size / len(train_faces), batch_size=batch_size,
                         lr=lr, flip=False, show_progress=show_progress)
        k = max(1, min(20, len(losses) // 5))
        info.update(loss_first=float(np.mean(losses[:k])), loss_last=float(np.mean(losses[-k:])), steps=len(losses))
    return qnet.eval(), info


def export_qat_onnx(qnet: nn.Module, card: ModelCard, path: str | Path, compact: bool = True) -> dict:
    """The QAT model as an edgeface ONNX graph (uint8 NHWC faces in, unit embeddings out) with
    int8 weights. TorchScript exporter (it maps NNCF's stripped fake-quantizers to
    QuantizeLinear/DequantizeLinear), opset 17. Returns storage details."""
    import nncf

    select_quantize_kernels()  # stripping runs the fake-quantizers once more
    import onnx

    from ..core.card import INPUT_NAME, OUTPUT_NAME
    from ..models.graph import FaceEmbeddingGraph, sample_faces
    from .evalfast import export_onnx
    from .onnx_compact import compact_int8, fold_weight_quantize

    h, w = card.input_size
    stripped = nncf.strip(copy.deepcopy(qnet), example_input=torch.zeros(1, 3, h, w))
    graph = FaceEmbeddingGraph(stripped, card).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # opset 17, TorchScript exporter: the dynamo exporter does not lower the stripped
    # fake-quantize ops to Q/DQ
    export_onnx(graph, card, path, opset=17, example=sample_faces(card, 2), input_name=INPUT_NAME, output_name=OUTPUT_NAME)
    model = onnx.load(str(path))
    info = {"weights_folded_int8": len(fold_weight_quantize(model))}
    if compact:
        info.update(compact_int8(model))
    onnx.checker.check_model(model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {"edgeface_card": card.to_json()})
    onnx.save(model, str(path))
    return info
