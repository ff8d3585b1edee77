"""A tiny but complete, sealed bundle (hand-built ONNX linear embedder + edgeface.json +
conformance set + edgeface.json.sha256), for fast bundle and runtime tests without torch
or ../shared. `reseal` rewrites edgeface.json and its digest after a test edits the manifest
(so the test reaches the rule it targets instead of stopping at the digest)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeface import __version__
from edgeface.core.card import ModelCard
from edgeface.runtime.bundle import BUNDLE_JSON, Bundle, file_sha256, write_manifest_digest

H, W, D = 8, 6, 16
CARD = ModelCard(name="tiny", arch="tiny", input_size=(H, W), embedding_size=D, template="sphereface_112x96", licence="test")


def tiny_onnx(path: Path, weights: np.ndarray, bias: np.ndarray | None = None, l2: bool = True, uint8: bool = True) -> Path:
    """uint8 (N,H,W,3) -> cast -> (x-127.5)/128 -> flatten -> MatMul (+ bias) -> L2 normalise
    (l2=False leaves the raw output; uint8=False takes normalised float32 NHWC input)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    if uint8:
        nodes += [helper.make_node("Cast", ["faces"], ["xf"], to=TensorProto.FLOAT), helper.make_node("Sub", ["xf", "mean"], ["xc"]),
                  helper.make_node("Div", ["xc", "std"], ["xn"])]
    else:
        nodes += [helper.make_node("Identity", ["faces"], ["xn"])]
    nodes += [helper.make_node("Reshape", ["xn", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["e0"])]
    inits = [numpy_helper.from_array(np.array(127.5, np.float32), "mean"), numpy_helper.from_array(np.array(128.0, np.float32), "std"),
             numpy_helper.from_array(np.array([-1, H * W * 3], np.int64), "shape"), numpy_helper.from_array(weights.astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    if bias is not None:
        nodes.append(helper.make_node("Add", ["e0", "b"], ["e"]))
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
    else:
        nodes.append(helper.make_node("Identity", ["e0"], ["e"]))
    if l2:
        nodes += [helper.make_node("ReduceL2", ["e", "axes"], ["n"], keepdims=1), helper.make_node("Div", ["e", "n"], ["embedding"])]
    else:
        nodes.append(helper.make_node("Identity", ["e"], ["embedding"]))
    elem = TensorProto.UINT8 if uint8 else TensorProto.FLOAT
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("faces", elem, ["batch", H, W, 3])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", D])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


def tiny_meta(model: Path) -> dict:
    from edgeface.export.converters import _io

    i, o = _io(CARD, None)
    return {
        "schema_version": 1, "kit_version": __version__, "status": "verified", "format": "onnx", "precision": "fp32",
        "backend": "onnxruntime", "model_file": model.name, "files": {model.name: file_sha256(model)}, "input": i, "output": o,
        "alignment": {"template": CARD.template, "crop_size": [H, W], "landmarks": [[0, 0]] * 5, "landmark_order": "re le n rm lm"},
        "embedding_size": D, "thresholds": {"metric": "cosine", "at_far": {"1e-3": {"threshold": 0.5}, "1e-4": {"threshold": 0.6}}},
        "quality": {}, "source": {"name": "tiny", "sha256": "0" * 64}, "parity": {"cosine_min": 1.0, "cosine_mean": 1.0, "num_faces": 1},
        "licence": "test", "card": CARD.to_dict(), "export": {"converter": "hand-made", "created": "2026-01-01T00:00:00+00:00"},
    }


def reseal(d: Path, meta: dict) -> None:
    (Path(d) / BUNDLE_JSON).write_text(json.dumps(meta))
    write_manifest_digest(d)


def make_tiny_bundle(d: Path, seed: int = 0) -> Path:
    """Write the bundle into folder d (created) and return it."""
    from edgeface.runtime.backends import make_backend
    from edgeface.runtime.conformance import write_conformance

    rng = np.random.default_rng(seed)
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    tiny_onnx(d / "model.onnx", rng.standard_normal((H * W * 3, D)))
    meta = tiny_meta(d / "model.onnx")
    b = Bundle(d, meta, CARD, "onnxruntime", make_backend("onnxruntime", d / "model.onnx"))
    meta["conformance"] = write_conformance(b, rng.integers(0, 256, (6, H, W, 3), dtype=np.uint8), ["a", "a", "b", "b", "c", "d"])
    reseal(d, meta)
    return d


def read(d: Path) -> dict:
    return json.loads((Path(d) / BUNDLE_JSON).read_text())
