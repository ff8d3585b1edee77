"""Fast repeated evaluation of torch models through ONNX Runtime (about 3x faster than torch
on the small CPUs here), plus latency measurement. The ONNX file is a plain
torch.onnx.export of the model, so evaluating through it also checks that pruned weights
survive export."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..card import ModelCard
from ..preprocess import l2_normalize, normalize


def export_onnx(model: nn.Module, card: ModelCard, path: str | os.PathLike, opset: int = 17) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = torch.zeros(1, 3, *card.input_size)
    kwargs = dict(input_names=["input"], output_names=["embedding"], dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=opset)
    try:
        torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
    except TypeError:  # torch without the dynamo switch
        torch.onnx.export(model, (x,), str(path), **kwargs)
    return path


def ort_session(path: str | os.PathLike, threads: int = 2):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxEmbedder:
    """Aligned uint8 faces -> unit embeddings through an ONNX file (the evaluate.Embedder interface)."""

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, card: ModelCard, threads: int = 2, batch_size: int = 64):
        self.card, self.batch_size = card, batch_size
        self.session = ort_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def embed(self, faces: np.ndarray) -> np.ndarray:
        x = normalize(faces, self.card)
        out = [self.session.run(None, {self.input_name: x[i : i + self.batch_size]})[0] for i in range(0, len(x), self.batch_size)]
        return l2_normalize(np.concatenate(out) if out else np.zeros((0, self.card.embedding_size), np.float32))


def embed_with_onnx(model: nn.Module, card: ModelCard, faces: np.ndarray, threads: int = 2) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        path = export_onnx(model, card, Path(d) / "model.onnx")
        return OnnxEmbedder(path, card, threads).embed(faces)


def latency_ms(onnx_path: str | os.PathLike, card: ModelCard, runs: int = 200, warmup: int = 20, threads: int = 1) -> dict:
    """Batch-1 latency through ONNX Runtime with `threads` threads: median and p90 of `runs`."""
    s = ort_session(onnx_path, threads)
    name = s.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, *card.input_size)).astype(np.float32)
    for _ in range(warmup):
        s.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))], "min_ms": times[0], "runs": runs, "threads": threads}


def torch_latency_ms(model: nn.Module, card: ModelCard, runs: int = 100, warmup: int = 10) -> dict:
    """Batch-1 latency in torch with 1 thread (restores the thread count)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.randn(1, 3, *card.input_size)
        model.eval()
        times = []
        with torch.inference_mode():
            for i in range(warmup + runs):
                t = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t) * 1e3)
    finally:
        torch.set_num_threads(prev)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": runs, "threads": 1}
