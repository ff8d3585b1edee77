"""A torch model behind the common embedder interface (aligned uint8 faces -> unit vectors)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.card import ModelCard
from ..core.preprocess import l2_normalize, normalize


class TorchEmbedder:
    backend = "torch"

    def __init__(self, model: nn.Module, card: ModelCard, device: str | None = None, batch_size: int = 64):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.card = card
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, faces: np.ndarray) -> np.ndarray:
        x = normalize(faces, self.card)
        outs = []
        for i in range(0, len(x), self.batch_size):
            outs.append(self.model(torch.from_numpy(x[i : i + self.batch_size]).to(self.device)).float().cpu().numpy())
        return l2_normalize(np.concatenate(outs) if outs else np.zeros((0, self.card.embedding_size), np.float32))
