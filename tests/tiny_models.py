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


# A user's own PyTorch package with the kinds of layers EdgeFace (Idiap, ConvNeXt/EdgeNeXt-style)
# has: LayerNorm, GELU, depthwise 7x7 convs, pointwise Linear layers and channel attention (a
# softmax over a channels x channels map, EdgeNeXt's XCA). Written as source into a folder so
# tests import it by path exactly as a user's package is (`tiny_edgeface_nets:build`).
TINY_EDGEFACE_SOURCE = '''
import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.dw = nn.Conv2d(d, d, 7, padding=3, groups=d)
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(0.5 * torch.ones(d))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    def __init__(self, d, heads=2):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.norm(x.flatten(2).transpose(1, 2))
        qkv = self.qkv(t).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 4, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = nn.functional.normalize(q, dim=-1)
        k = nn.functional.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        y = (attn @ v).permute(0, 3, 1, 2).reshape(b, h * w, c)
        return x + self.proj(y).transpose(1, 2).reshape(b, c, h, w)


class TinyEdgeFace(nn.Module):
    def __init__(self, dim=16, embedding=32):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.stem_norm = LayerNorm2d(dim)
        self.block = ConvBlock(dim)
        self.down = nn.Sequential(LayerNorm2d(dim), nn.Conv2d(dim, 2 * dim, 2, stride=2))
        self.attn = ChannelAttention(2 * dim)
        self.block2 = ConvBlock(2 * dim)
        self.head_norm = nn.LayerNorm(2 * dim)
        self.fc = nn.Linear(2 * dim, embedding)

    def forward(self, x):
        x = self.block(self.stem_norm(self.stem(x)))
        x = self.block2(self.attn(self.down(x)))
        return self.fc(self.head_norm(x.mean((2, 3))))


def build():
    return TinyEdgeFace()
'''
TINY_EDGEFACE_SPEC = "tiny_edgeface_nets:build"
TINY_EDGEFACE_EMBEDDING = 32


def write_tiny_edgeface(folder: Path, seed: int = 0) -> tuple[str, Path]:
    """The package source in `folder` (put it on sys.path to import it) and seeded random weights as
    .safetensors; returns (import path, weights file)."""
    import importlib
    import sys

    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_edgeface_nets.py").write_text(TINY_EDGEFACE_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop("tiny_edgeface_nets", None)
        torch.manual_seed(seed)
        net = importlib.import_module("tiny_edgeface_nets").build()
    finally:
        sys.path.remove(str(folder))
    weights = folder / "tiny_edgeface.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    return TINY_EDGEFACE_SPEC, weights
