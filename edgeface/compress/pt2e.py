"""int8 through PyTorch 2 export quantization (PT2E) with litert-torch's quantizer, for TFLite.

Why not ai-edge-quantizer on the fp32 .tflite: measured on the reference MobileFaceNet (200
faces not used for calibration, 300 calibration faces; benchmarks/experiments/tflite_int8_methods.py ->
results/tflite_int8_methods_068.json), AEQ static int8 with the head float gave cosine to fp32
min 0.887 / mean 0.982 and ran 29 ms against fp32's 8.6 ms (its int8 MUL/SUB of the lowered
PReLU leave XNNPACK); PReLU ops float: 0.904; int16 activations everywhere: 0.912 at 212 ms.
PT2E quantizes conv / linear / add on the BN-folded model and leaves PReLU in float between
them: min 0.955 / mean 0.987 at 8.4 ms all int8, 0.980 / 0.992 at 8.5 ms with the defaults
below. Min/max activation ranges instead of the histogram observer: 0.919. (These numbers predate
sequential calibration, the default since 2026-12-03: on the reference it measured 0.97960 / 0.99173,
results/export_matrix_edge15_reference_seqcal.md.)
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..core.card import ModelCard
from .float_scope import FloatScope

# The first conv and MobileFaceNet's last three layers (expand 1x1, GDC, projection): see pt2e_int8.
DEFAULT_FLOAT_SCOPE = FloatScope(first=True, last=3)


def _quantizer(float_from: list[str], activation_observer: str = "histogram", float_modules: tuple[str, ...] = (), fake_quant: bool = False):
    """litert-torch's PT2EQuantizer (symmetric int8, per-channel weights), with everything from
    the first node of a `float_from` module to the output, and the `float_modules`, left in float (its
    set_module_name(name, None) is not implemented, so the annotations are dropped after
    annotating; the ops after the head share its output's quantization spec and go too).
    fake_quant: fake quantizers (QAT's graph: for QAT and for sequential calibration) instead of
    plain observers."""
    import dataclasses

    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver

    class FloatScopeQuantizer(pq.PT2EQuantizer):
        # BatchNorm is folded before export, so QAT has no conv+BN pairs to fuse (litert-torch's
        # conv_bn pattern builder also fails against this torchao: it exports a function)
        STATIC_QAT_ONLY_OPS: list[str] = []

        def annotate(self, model):
            model = super().annotate(model)
            floating = in_net = False
            dropped: set = set()
            for node in model.graph.nodes:
                paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
                net_node = any(p == "net" or p.startswith("net.") for p in paths)
                # The L2 normalisation after the network is always float, as NNCF's ignored scope keeps it
                # (quantizing its x*x made the int8 embeddings 1.0009 long instead of unit length)
                floating = floating or any(p in float_from for p in paths) or (in_net and not net_node and node.op == "call_function")
                in_net = in_net or net_node
                if floating or any(p in float_modules for p in paths) or not _is_float(node):
                    if node.meta.pop("quantization_annotation", None) is not None:
                        dropped.add(node)
                elif "quantization_annotation" in node.meta:  # integer inputs (index arithmetic) are never observed
                    qmap = node.meta["quantization_annotation"].input_qspec_map
                    for arg in [a for a in qmap if not _is_float(a)]:
                        del qmap[arg]
            _drop_dangling_shares(model, dropped)
            return model

    config = pq.get_symmetric_quantization_config(is_per_channel=True, is_qat=fake_quant)
    if fake_quant:
        # fake-quantized activations ranged by the same histogram search as PTQ (calibrated sequentially by
        # pt2e_int8); qat_steps then freezes them
        observer = MinMaxObserver if activation_observer == "minmax" else HistogramObserver
        act_ctr = FakeQuantize.with_args(observer=observer, eps=2**-12)
    elif activation_observer == "minmax":
        act_ctr = MinMaxObserver.with_args(eps=2**-12)
    else:
        return FloatScopeQuantizer().set_global(config)
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=act_ctr)
    return FloatScopeQuantizer().set_global(dataclasses.replace(config, input_activation=act, output_activation=act))


def _is_float(node) -> bool:
    """Whether a graph node computes a floating-point tensor (integer index arithmetic, e.g. the
    arange / cumsum of EdgeNeXt's positional encoding, matches the quantizer's add/mul patterns
    too: observing it failed with "histogram_cpu not implemented for 'Long'")."""
    if getattr(node, "op", None) == "get_attr":  # a lifted constant carries no "val": look at the tensor itself
        val = node.graph.owning_module
        for part in str(node.target).split("."):
            val = getattr(val, part, None)
    else:
        val = getattr(node, "meta", {}).get("val")
    return not isinstance(val, torch.Tensor) or val.dtype.is_floating_point


def _drop_dangling_shares(model, dropped: set) -> None:
    """Ops whose quantization is shared with an op left in float (a SharedQuantizationSpec on its
    node or edge) go float too, until none is left: otherwise prepare_pt2e looks the float op up and
    fails (KeyError on the node). LayerNorm-style graphs share the layout ops after a float first
    conv with it (the permute before a channels-last LayerNorm: ConvNeXt, EdgeFace)."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    def refers(spec) -> bool:
        if not isinstance(spec, SharedQuantizationSpec):
            return False
        ref = spec.edge_or_node
        return any(r in dropped for r in (ref if isinstance(ref, tuple) else (ref,)))

    changed = bool(dropped)
    while changed:
        changed = False
        for node in model.graph.nodes:
            ann = node.meta.get("quantization_annotation")
            if ann is None:
                continue
            if refers(ann.output_qspec) or any(refers(q) for q in ann.input_qspec_map.values()):
                node.meta.pop("quantization_annotation")
                dropped.add(node)
                changed = True


def pt2e_int8(net: torch.nn.Module, card: ModelCard, calib: np.ndarray, float_scope: FloatScope | None = None,
              mirror_calibration: bool = True, activation_observer: str = "histogram", fold_bn: bool = True, batch: int = 32,
              train_faces: np.ndarray | None = None, steps: int = 0, lr: float = 1e-5, seed: int = 0, show_progress: bool = True,
              sequential_calibration: bool = True):
    """A PT2E-quantized FaceEmbeddingGraph of `net` (uint8 NHWC faces in, unit embeddings out),
    ready for litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=quantizer)).
    BatchNorm is folded first, so each conv is quantized with the weights that run on the
    device. float_scope: the layers left float (default: the first and the last three).

    sequential_calibration: each activation range is measured with every layer before it already
    fake-quantized, i.e. on the inputs the int8 model will really see (False: all ranges on the
    float model, PT2E's plain prepare_pt2e). Measured on dlib_resnet_edge (200 held-out faces,
    cosine of the TFLite int8 file to fp32): float-model ranges min 0.99548 / mean 0.99793,
    sequential 0.99859 / 0.99966, although both ranges give 0.9996-0.9997 in the torch simulation.

    steps > 0: quantization-aware training (see qat_steps) on `train_faces` after calibration;
    0: post-training quantization. Returns (quantized module, quantizer, info)."""
    from torchao.quantization.pt2e import quantize_pt2e

    from .fold import execution_order, fold_batchnorm
    from ..models.graph import FaceEmbeddingGraph, sample_faces

    if calib is None or len(calib) == 0:
        raise ValueError("int8 needs calibration faces")
    h, w = card.input_size
    net = copy.deepcopy(net).float().eval()
    net, folded = fold_batchnorm(net, torch.zeros(2, 3, h, w)) if fold_bn else (net, 0)
    graph = FaceEmbeddingGraph(net, card).eval()
    layers = execution_order(net, torch.zeros(1, 3, h, w))
    # The first conv (raw pixels) and the last `float_scope.last` layers (their rounding lands straight
    # in the embedding; at 7x7 and below they cost little in float) stay float. On the reference
    # MobileFaceNet (tflite_int8_methods_068.json): only the head float, min cosine 0.955; + first
    # conv 0.969; + the last three layers (expand 1x1, GDC, projection) 0.972; + mirrored copies
    # of the calibration faces 0.980 / mean 0.992.
    float_scope = DEFAULT_FLOAT_SCOPE if float_scope is None else float_scope
    tail = [f"net.{name}" for name in float_scope.tail(layers)]
    first = tuple(f"net.{name}" for name in float_scope.head(layers))
    if steps < 0:
        raise ValueError(f"QAT steps must be >= 0, got {steps}")
    if steps and (train_faces is None or len(train_faces) < 2):
        raise ValueError(f"PT2E quantization-aware training needs training faces, got {0 if train_faces is None else len(train_faces)}")
    # fake quantizers (QAT's graph) for QAT and for sequential calibration; plain observers otherwise
    fake = bool(steps) or sequential_calibration
    quantizer = _quantizer(tail[:1], activation_observer, first, fake_quant=fake)  # from the tail's first layer on, all float
    batch_dim = torch.export.Dim("batch", min=1, max=4096)
    ex = torch.export.export(graph, (sample_faces(card, 2),), dynamic_shapes=({0: batch_dim},)).module()
    m = (quantize_pt2e.prepare_qat_pt2e if fake else quantize_pt2e.prepare_pt2e)(ex, quantizer)
    n_faces = len(calib)
    if mirror_calibration:  # a mirrored face is a face: twice the data for the histograms
        calib = np.concatenate([calib, calib[:, :, ::-1]])
    with torch.no_grad():  # observers record the activation ranges (behind the fake-quantized layers when sequential)
        for k in range(0, len(calib), batch):
            m(torch.from_numpy(np.ascontiguousarray(calib[k : k + batch])))
    info = {"quantizer": "PT2E (torchao) with litert-torch's PT2EQuantizer: int8 per-channel weights, int8 activations around conv/linear/add; PReLU in float",
            "batchnorm_folded": folded, "calibration_faces": n_faces, "calibration_mirrored": mirror_calibration,
            "kept_in_float": list(first) + tail,
            "calibration": "sequential (each activation range measured behind the already fake-quantized layers)" if fake else "float model"}
    if steps:
        info["qat"] = qat_steps(m, graph, train_faces, steps, lr, batch, seed, show_progress)
    m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
    return m, quantizer, info


def qat_steps(m: torch.nn.Module, float_graph: torch.nn.Module, faces: np.ndarray, steps: int, lr: float, batch: int, seed: int = 0,
              show_progress: bool = True) -> dict:
    """Quantization-aware training of the prepared (fake-quantized) graph `m`, in place: its weights
    learn to reproduce the float graph's own embeddings of `faces` and of their mirror images
    (1 - cosine; distillation from the float model, no labels). The activation ranges stay those
    calibration chose (the histogram observers are switched off first: a moving min/max of
    training batches measured worse ranges than the histogram search on the reference model, see
    the module docstring); the weight ranges follow the weights. Returns steps, lr and the loss at
    the start and the end."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    from ..core.progress import progress

    for mod in m.modules():  # freeze the calibrated activation ranges; weight quantizers (per channel) keep observing
        if isinstance(mod, FakeQuantizeBase) and not getattr(mod, "is_per_channel", False):
            mod.disable_observer()
    with torch.no_grad():
        teacher = float_graph.eval()
        faces = np.concatenate([faces, faces[:, :, ::-1]])  # mirrored faces are faces too
        targets = torch.cat([teacher(torch.from_numpy(np.ascontiguousarray(faces[k : k + 64]))) for k in range(0, len(faces), 64)])
    move_exported_model_to_train(m)
    allow_exported_model_train_eval(m)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in progress(range(steps), desc="PT2E QAT", unit="step", enabled=show_progress):
        idx = rng.choice(len(faces), min(batch, len(faces)), replace=False)
        out = m(torch.from_numpy(np.ascontiguousarray(faces[idx])))
        loss = (1 - torch.nn.functional.cosine_similarity(out, targets[idx], dim=1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    m.eval()
    k = max(1, min(20, len(losses) // 5))
    return {"steps": steps, "lr": lr, "batch": batch, "training_faces": len(faces) // 2, "training_faces_mirrored": True,
            "parameters_trained": int(sum(p.numel() for p in params)),
            "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:]))}
