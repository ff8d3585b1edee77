"""Storage compaction of an NNCF-quantized (QDQ) ONNX graph: what is left in float32 after
quantization, stored smaller, without changing what the graph computes in int8.

Measured on the reference MobileFaceNet (step by step in docs/results/compression.md, Quantization): the
NNCF file is 1.41 MB, of which 0.91 MB int8 weights, 0.27 MB the two convs kept in float (the
embedding projection is 0.26 MB), 0.13 MB float32 biases / PReLU slopes / scales, and 0.07 MB
tensor and node names. Three steps, each optional:

* ``float_weights_int8``: a float conv whose weight is large (the embedding projection) gets
  int8 per-output-channel symmetric weights and a DequantizeLinear, activations staying
  float ("weight-only" int8). Quantizing that layer's *activations* is what cost accuracy
  (min cosine 0.912 instead of 0.973); its weights alone cost ~0.001.
* ``float_params_fp16``: the remaining float32 parameters (conv biases, PReLU slopes, small
  float conv weights) are stored as float16 and Cast back to float32 in the graph; ONNX
  Runtime folds the Casts when it loads the session, so the compute is float32 on values
  rounded to fp16.
* ``short_names``: node and intermediate tensor names (NNCF's are long paths) become short
  ids; the graph's input and output names are kept. Netron still shows the structure.
"""
from __future__ import annotations

import numpy as np

# Float conv weights above this many bytes become weight-only int8 (the first conv, 7 kB,
# stays float: it sees raw pixels and costs nothing to keep).
WEIGHT_ONLY_MIN_BYTES = 64_000


def _uses(graph) -> dict[str, list[tuple[str, int]]]:
    uses: dict[str, list[tuple[str, int]]] = {}
    for n in graph.node:
        for k, name in enumerate(n.input):
            uses.setdefault(name, []).append((n.op_type, k))
    return uses


def float_weights_int8(model, min_bytes: int = WEIGHT_ONLY_MIN_BYTES) -> list[str]:
    """Large float32 Conv weights -> int8 + DequantizeLinear (per output channel, symmetric).
    Returns the names of the converted weights."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    uses = _uses(g)
    done = []
    for node in list(g.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        name = node.input[1]
        w = numpy_helper.to_array(inits[name])
        if w.dtype != np.float32 or w.nbytes < min_bytes or len(uses.get(name, [])) != 1:
            continue
        scale = np.abs(w).reshape(w.shape[0], -1).max(1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
        g.initializer.remove(inits[name])
        g.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale"),
                              numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"{name}_zero")])
        dq = helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"], [name], axis=0, name=f"{name}_dequantize")
        g.node.insert(list(g.node).index(node), dq)
        done.append(name)
    return done


def float_params_fp16(model) -> int:
    """float32 initializers used only as Conv weight/bias or PRelu slope -> float16 + Cast.
    Returns how many tensors were converted."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    uses = _uses(g)
    casts = []
    for t in list(g.initializer):
        u = uses.get(t.name, [])
        if not u or not all(op in ("Conv", "PRelu") and k >= 1 for op, k in u):
            continue
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32 or a.size < 2 or not np.all(np.abs(a) < 60000):
            continue
        g.initializer.remove(t)
        g.initializer.append(numpy_helper.from_array(a.astype(np.float16), f"{t.name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{t.name}_fp16"], [t.name], to=TensorProto.FLOAT, name=f"{t.name}_cast"))
    for c in reversed(casts):
        g.node.insert(0, c)
    return len(casts)


def short_names(model) -> int:
    """Rename nodes and intermediate tensors to short ids; graph inputs/outputs keep theirs."""
    g = model.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    renamed: dict[str, str] = {}

    def rename(x: str) -> str:
        if not x or x in keep:
            return x
        if x not in renamed:
            renamed[x] = f"t{len(renamed)}"
        return renamed[x]

    for t in g.initializer:
        t.name = rename(t.name)
    for k, n in enumerate(g.node):
        n.name = f"n{k}"
        n.input[:] = [rename(i) for i in n.input]
        n.output[:] = [rename(o) for o in n.output]
    del g.value_info[:]  # shape annotations of renamed tensors; ONNX Runtime re-infers them
    return len(renamed)


def _constants(graph) -> dict:
    """name -> numpy array of every initializer and Constant node output, and of Identity nodes
    of those (the TorchScript exporter shares zero points through Identity chains)."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:  # topological order: an Identity's source comes first
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in out:
            out[n.output[0]] = out[n.input[0]]
    return out


def fold_weight_quantize(model) -> list[str]:
    """QuantizeLinear of a constant float weight -> the quantized int8/uint8 tensor itself.

    A quantization-aware-trained torch model exports its weights as float initializers behind
    QuantizeLinear -> DequantizeLinear (4.1 MB for the reference MobileFaceNet, no smaller than
    fp32); PTQ on the ONNX graph (NNCF) already stores them quantized. Computed with
    QuantizeLinear's own definition (saturate(round_half_even(w / scale) + zero_point), per
    axis when the scale is a vector), so the graph computes exactly the same values.
    Returns the names of the folded weights."""
    from onnx import numpy_helper

    g = model.graph
    consts = _constants(g)
    uses = _uses(g)
    folded = []
    for node in list(g.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in consts or len(uses.get(node.input[0], [])) != 1:
            continue
        w = consts[node.input[0]]
        if w.dtype.kind != "f" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        w = w.astype(np.float32)
        scale = consts[node.input[1]].astype(np.float32)
        zp = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * w.ndim
            shape[axis % w.ndim] = -1
            scale, zpb = scale.reshape(shape), zp.reshape(shape).astype(np.int32)
        else:
            zpb = zp.astype(np.int32)
        info = np.iinfo(zp.dtype)
        q = np.clip(np.round(w / scale) + zpb, info.min, info.max).astype(zp.dtype)
        g.node.remove(node)
        g.initializer.append(numpy_helper.from_array(q, node.output[0]))
        folded.append(node.input[0])
    # drop the float weights (initializers or Constant nodes) nothing reads any more
    still_used = {i for n in g.node for i in n.input}
    for t in list(g.initializer):
        if t.name in folded and t.name not in still_used:
            g.initializer.remove(t)
    for n in list(g.node):
        if n.op_type == "Constant" and n.output[0] in folded and n.output[0] not in still_used:
            g.node.remove(n)
    return folded


def compact_int8(model, weight_only: bool = True, fp16_params: bool = True, names: bool = True) -> dict:
    """All three steps in place; returns what was done (for the bundle's export details)."""
    import onnx

    info: dict = {}
    if weight_only:
        info["weight_only_int8"] = float_weights_int8(model)
    if fp16_params:
        info["float_params_stored_fp16"] = float_params_fp16(model)
    if names:
        info["names_shortened"] = short_names(model)
    onnx.checker.check_model(model)
    return info
