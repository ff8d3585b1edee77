"""A plain model file (.onnx, OpenVINO .xml, .tflite) behind the embedder interface.

The one way the kit embeds faces through a model file that is not a bundle: `edgeface bench` and
`edgeface eval` on a plain file, and the compress stage's evaluation of the files it writes. It
runs on the runtime's own backends (edgeface.runtime.backends: the same loaders and session
settings as a bundle), so a plain file and the same file inside a bundle are measured alike.

If the graph takes uint8 it gets the raw crops (normalisation inside, as in edgeface bundles);
if it takes float it gets them normalised as the card says. The layout (NCHW or NHWC) is read
from the input shape. Torch-free.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.card import ModelCard
from ..core.targets import TARGETS
from ..core.preprocess import check_faces, l2_normalize, normalize
from .backends import make_backend

# Backend of each plain model file suffix, from the target table (the first row of a suffix; a
# multi-part suffix such as ncnn's .ncnn.param names no single file).
SUFFIX_BACKENDS: dict[str, str] = {}
for _t in TARGETS:
    if _t.suffix.count(".") == 1:
        SUFFIX_BACKENDS.setdefault(_t.suffix, _t.backend)


def layout_of(shape) -> str:
    """NHWC when the last of four dimensions is 3 and the second is not, else NCHW."""
    dims = list(shape or ())
    return "NHWC" if len(dims) == 4 and dims[-1] == 3 and dims[1] != 3 else "NCHW"


class ModelFile:
    """(N, H, W, 3) uint8 RGB aligned faces -> (N, D) float32 unit vectors through one model file."""

    def __init__(self, path: str | os.PathLike, card: ModelCard, threads: int = 0, backend: str | None = None, batch_size: int = 64):
        self.path = Path(path)
        if backend is None and self.path.suffix not in SUFFIX_BACKENDS:
            raise ValueError(f"{self.path}: unsupported model file {self.path.suffix!r}; expected one of {sorted(SUFFIX_BACKENDS)}")
        self.card = card
        self.threads = threads
        self.batch_size = batch_size
        self.backend = backend or SUFFIX_BACKENDS[self.path.suffix]
        self.runner = make_backend(self.backend, self.path, threads)
        self.meta = {"format": self.path.suffix.lstrip("."), "precision": "unknown", "model_file": self.path.name}
        self.layout = layout_of(self.runner.input_shape)
        self.takes_uint8 = self.runner.input_dtype == np.uint8

    def embed(self, faces: np.ndarray) -> np.ndarray:
        faces = check_faces(faces, self.card)
        if len(faces) == 0:
            return np.zeros((0, self.card.embedding_size), np.float32)
        if self.takes_uint8:
            x = faces if self.layout == "NHWC" else np.ascontiguousarray(faces.transpose(0, 3, 1, 2))
        else:
            x = normalize(faces, self.card, self.layout)
        outs = [np.asarray(self.runner.run(x[i : i + self.batch_size]), np.float32).reshape(min(self.batch_size, len(x) - i), -1)
                for i in range(0, len(x), self.batch_size)]
        return l2_normalize(np.concatenate(outs))
