"""int8 through PyTorch 2 export quantization (PT2E) with litert-torch's quantizer, for TFLite.

Why not ai-edge-quantizer on the fp32 .tflite: measured on the reference MobileFaceNet
(200 faces not used for calibration, 300 calibration faces, head in float), AEQ static int8
gave cosine to fp32 min 0.887 / mean 0.982 and ran 28 ms on one thread (the int8 MUL/SUB of
the lowered PReLU fall out of XNNPACK); keeping PReLU float gave 0.909, int16 activations
everywhere only 0.912 (and 245 ms). PT2E quantizes conv / linear / add and leaves PReLU in
float between them: min 0.962 / mean 0.987 at 8 ms (benchmarks/results/tflite_int8_methods.json).
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..card import ModelCard


def _quantizer(keep_float: list[str], activation_observer: str = "histogram"):
    """litert-torch's PT2EQuantizer (symmetric int8, per-channel weights), with everything from
    the first node of a `keep_float` module to the output left in float (its
    set_module_name(name, None) is not implemented, so the annotations are dropped after
    annotating; the ops after the head share its output's quantization spec and go too)."""
    from litert_torch.quantize import pt2e_quantizer as pq

    class FloatScopeQuantizer(pq.PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            floating = False
            for node in model.graph.nodes:
                stack = node.meta.get("nn_module_stack", {})
                floating = floating or any(path in keep_float for path, _ in stack.values())
                if floating:
                    node.meta.pop("quantization_annotation", None)
            return model

    config = pq.get_symmetric_quantization_config(is_per_channel=True)
    if activation_observer == "minmax":
        import dataclasses

        from torchao.quantization.pt2e.observer import MinMaxObserver

        act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return FloatScopeQuantizer().set_global(config)


def pt2e_int8(net: torch.nn.Module, card: ModelCard, calib: np.ndarray, keep_float_head: bool = True, batch: int = 32,
              activation_observer: str = "histogram"):
    """A PT2E-quantized FaceEmbeddingGraph of `net` (uint8 NHWC faces in, unit embeddings out),
    ready for litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=quantizer)).
    BatchNorm is folded first, so each conv is quantized with the weights that run on the
    device. Returns (quantized module, quantizer, info)."""
    from torchao.quantization.pt2e import quantize_pt2e

    from ..compress.fold import execution_order, fold_batchnorm
    from .graph import FaceEmbeddingGraph, sample_faces

    if calib is None or len(calib) == 0:
        raise ValueError("int8 needs calibration faces")
    h, w = card.input_size
    net, folded = fold_batchnorm(copy.deepcopy(net).float(), torch.zeros(2, 3, h, w))
    graph = FaceEmbeddingGraph(net, card).eval()
    layers = execution_order(net, torch.zeros(1, 3, h, w))
    # The embedding projection stays float, as on the ONNX/OpenVINO paths: its rounding lands
    # straight in the embedding.
    keep = [f"net.{layers[-1]}"] if keep_float_head and layers else []
    quantizer = _quantizer(keep, activation_observer)
    batch_dim = torch.export.Dim("batch", min=1, max=4096)
    ex = torch.export.export(graph, (sample_faces(card, 2),), dynamic_shapes=({0: batch_dim},)).module()
    m = quantize_pt2e.prepare_pt2e(ex, quantizer)
    with torch.no_grad():  # observers record the activation ranges
        for k in range(0, len(calib), batch):
            m(torch.from_numpy(np.ascontiguousarray(calib[k : k + batch])))
    m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
    info = {"quantizer": "PT2E (torchao) with litert-torch's PT2EQuantizer: int8 per-channel weights, int8 activations around conv/linear/add; PReLU in float",
            "batchnorm_folded": folded, "calibration_faces": int(len(calib)), "kept_in_float": keep}
    return m, quantizer, info
