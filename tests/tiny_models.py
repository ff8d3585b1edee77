"""Tiny but real model files for bench/device tests: a random linear embedder written as ONNX,
fed uint8 NHWC faces (normalisation inside the graph, as edgeface bundles are) or float NCHW."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeface.core.card import ModelCard

TINY_CARD = ModelCard(name="tiny_linear", arch="linear", input_size=(112, 96), embedding_size=16, template="sphereface_112x96", licence="test weights")


def tiny_weights(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((112 * 96 * 3, 16)).astype(np.float32) / 100


def reference_embed(faces: np.ndarray, layout: str = "NHWC", seed: int = 0) -> np.ndarray:
    """What the tiny model computes, in numpy (the 'source model' of parity checks)."""
    x = (faces.astype(np.float32) - 127.5) / 128.0
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    y = x.reshape(len(x), -1) @ tiny_weights(seed)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def write_tiny_onnx(path: Path, uint8_input: bool = True, seed: int = 0, write_card: bool = True) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nodes, inits = [], [numpy_helper.from_array(tiny_weights(seed), "W"), numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]
    if uint8_input:
        inp = helper.make_tensor_value_info("faces", TensorProto.UINT8, ["N", 112, 96, 3])
        inits += [numpy_helper.from_array(np.array(127.5, np.float32), "mean"), numpy_helper.from_array(np.array(128.0, np.float32), "std")]
        nodes += [helper.make_node("Cast", ["faces"], ["xf"], to=TensorProto.FLOAT), helper.make_node("Sub", ["xf", "mean"], ["xc"]), helper.make_node("Div", ["xc", "std"], ["x"])]
    else:
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 96])
    # Reshape with [0, -1] keeps the batch dimension dynamic.
    nodes += [helper.make_node("Reshape", ["x", "flat"], ["v"]), helper.make_node("MatMul", ["v", "W"], ["embedding"])]
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 16])
    graph = helper.make_graph(nodes, "tiny_linear", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if write_card:
        path.with_suffix(".card.json").write_text(json.dumps(TINY_CARD.to_dict()))
    return path
