"""The graph every exported model contains: uint8 aligned faces in, unit embeddings out.

Design choice (stated in every bundle's edgeface.json): all formats take the aligned crop
exactly as the aligner produces it — uint8 RGB, NHWC (N, H, W, 3), values 0-255 — and
return L2-normalised float32 embeddings. Colour-order change, (x - mean) / std and the
L2 normalisation are inside the graph, so application code on a phone or board only
detects and aligns; nothing the kit did in Python has to be re-implemented (and got
subtly wrong) on the device. The NHWC -> NCHW transpose is in the graph too; converters
for NHWC runtimes (TFLite) fold it away.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.card import ModelCard

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # the same luma weights edgeface.core.preprocess uses


class FaceEmbeddingGraph(nn.Module):
    """Wraps an embedding net (normalised NCHW float -> (N, D)) with the card's preprocessing."""

    def __init__(self, net: nn.Module, card: ModelCard, mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None):
        super().__init__()
        self.net = net.eval()
        self.card = card
        mean = card.mean if mean is None else mean  # overriding mean/std exists for the parity-failure test
        std = card.std if std is None else std
        if card.color_order == "RGB":
            mix = torch.eye(3)
        elif card.color_order == "BGR":
            mix = torch.eye(3).flip(1)
        else:  # GRAY: luma replicated on 3 channels
            mix = torch.tensor(GRAY_WEIGHTS).view(3, 1).repeat(1, 3)
        # x_norm = (x @ mix - mean) / std  ==  x @ (mix / std) - mean / std  (one MatMul-free affine)
        scale = mix / torch.tensor(std).view(1, 3)
        self.register_buffer("colour_scale", scale, persistent=False)
        self.register_buffer("colour_offset", (-torch.tensor(mean) / torch.tensor(std)).view(1, 1, 1, 3), persistent=False)
        self.identity_colour = card.color_order == "RGB"
        self.register_buffer("channel_scale", torch.diagonal(scale).view(1, 1, 1, 3).clone(), persistent=False)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = faces.to(torch.float32)
        if self.identity_colour:
            x = x * self.channel_scale + self.colour_offset  # per-channel affine: cheapest for every runtime
        else:
            x = torch.matmul(x, self.colour_scale) + self.colour_offset
        x = x.permute(0, 3, 1, 2)
        emb = self.net(x)
        emb = emb.flatten(1)
        norm = torch.sqrt(torch.sum(emb * emb, dim=1, keepdim=True))
        return emb / torch.clamp(norm, min=1e-10)


def sample_faces(card: ModelCard, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Deterministic random faces for tracing and checks: (batch, H, W, 3) uint8 at the card's input size, seeded by `seed`."""
    h, w = card.input_size
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, h, w, 3), generator=g, dtype=torch.uint8)
