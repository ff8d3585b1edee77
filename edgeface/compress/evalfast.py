"""Fast repeated evaluation of torch models through ONNX Runtime (about 3x faster than torch
on the small CPUs here), plus latency measurement. The ONNX file is a plain
torch.onnx.export of the model (float NCHW in, raw embedding out), embedded through the runtime's
ModelFile, so evaluating through it also checks that pruned weights survive export."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.card import ModelCard
from ..core.ort_session import onnxruntime_session
from ..runtime.model_file import ModelFile
from ..core.timing import time_calls


def export_onnx(model: nn.Module, card: ModelCard, path: str | os.PathLike, opset: int = 17, example: torch.Tensor | None = None,
                input_name: str = "input", output_name: str = "embedding", dynamic_batch: bool = True) -> Path:
    """The kit's TorchScript ONNX export (dynamic batch unless told otherwise; returns the path): the bare network by default
    (`example` a float (1, 3, H, W) zero batch), used for the core graph and fast evaluation; QAT passes
    its uint8 face graph, because only this exporter lowers NNCF's stripped fake-quantizers to Q/DQ.
    (The full graph of `edgeface export` uses the dynamo exporter: export.converters.torch_to_onnx.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = torch.zeros(1, 3, *card.input_size) if example is None else example
    kwargs = dict(input_names=[input_name], output_names=[output_name], opset_version=opset,
                  dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None)
    try:
        torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
    except TypeError:  # torch without the dynamo switch
        torch.onnx.export(model, (x,), str(path), **kwargs)
    return path


def embed_with_onnx(model: nn.Module, card: ModelCard, faces: np.ndarray, threads: int = 2) -> np.ndarray:
    """Embed (N, H, W, 3) uint8 faces through a temporary ONNX export of the model (onnxruntime, `threads` threads)."""
    with tempfile.TemporaryDirectory() as d:
        path = export_onnx(model, card, Path(d) / "model.onnx")
        return ModelFile(path, card, threads).embed(faces)


def latency_ms(onnx_path: str | os.PathLike, card: ModelCard, runs: int = 200, warmup: int = 20, threads: int = 1) -> dict:
    """Batch-1 latency through ONNX Runtime (the kit's session options) with `threads` threads: median and p90 of `runs`."""
    s = onnxruntime_session(onnx_path, threads)
    name = s.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, *card.input_size)).astype(np.float32)
    t = time_calls(lambda: s.run(None, {name: x}), warmup=warmup, warmup_time=0.0, min_reps=runs, min_time=0.0, max_time=float("inf"))
    return {"median_ms": t["p50"], "p90_ms": t["p90"], "min_ms": t["min"], "runs": runs, "threads": threads}


def torch_latency_ms(model: nn.Module, card: ModelCard, runs: int = 100, warmup: int = 10) -> dict:
    """Batch-1 latency in torch with 1 thread (restores the thread count)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.randn(1, 3, *card.input_size)
        model.eval()
        with torch.inference_mode():
            t = time_calls(lambda: model(x), warmup=warmup, warmup_time=0.0, min_reps=runs, min_time=0.0, max_time=float("inf"))
    finally:
        torch.set_num_threads(prev)
    return {"median_ms": t["p50"], "min_ms": t["min"], "runs": runs, "threads": 1}
