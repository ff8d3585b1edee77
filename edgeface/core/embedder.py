"""What every face embedder in the kit is: aligned uint8 RGB faces in, unit vectors out.

Torch models (models.embedder.TorchEmbedder), bundles (runtime.Bundle) and plain model files
(runtime.model_file.ModelFile) all satisfy it, so evaluation, verification, compression and the
bench measure each of them the same way (eval.verification.PairSet.evaluate)."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .card import ModelCard


@runtime_checkable
class Embedder(Protocol):
    """card: the model card (input size, template, embedding size); backend: what runs it (for logs)."""

    card: ModelCard
    backend: str

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB faces aligned with card.template -> (N, D) float32 unit vectors."""
        ...
