"""Light CNN-9 / Light CNN-29 (Wu, He, Sun, Tan, "A Light CNN for Deep Face Representation
with Noisy Labels", TIFS 2018), with Max-Feature-Map activations.

MFM 2/1 splits the channels into two halves and keeps the element-wise maximum (a
competitive, parameter-free "maxout" that halves the width). The paper's MFM 3/2 variant
splits into three and keeps the largest two (max and median), i.e. 2/3 of the channels.
Our versions take 3-channel 112x112 crops (the paper used 128x128 grayscale); the
fully-connected layer's input follows the crop size.
"""
from __future__ import annotations

import torch
from torch import nn


class MFM(nn.Module):
    """Max-Feature-Map over channels (dim 1), mode '2/1' or '3/2'."""

    def __init__(self, mode: str = "2/1"):
        super().__init__()
        if mode not in ("2/1", "3/2"):
            raise ValueError(f"MFM mode must be '2/1' or '3/2', got {mode!r}")
        self.mode = mode

    @staticmethod
    def expansion(mode: str) -> float:
        return 2.0 if mode == "2/1" else 1.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "2/1":
            a, b = torch.chunk(x, 2, dim=1)
            return torch.maximum(a, b)
        a, b, c = torch.chunk(x, 3, dim=1)
        hi = torch.maximum(torch.maximum(a, b), c)
        lo = torch.minimum(torch.minimum(a, b), c)
        mid = a + b + c - hi - lo  # the median of three
        return torch.cat([hi, mid], dim=1)


def _pre(cout: int, mode: str) -> int:
    """Channels before MFM so that `cout` come out."""
    if mode == "2/1":
        return 2 * cout
    if cout % 2:
        raise ValueError(f"MFM 3/2 needs an even number of output channels, got {cout}")
    return 3 * cout // 2


class MFMConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int = 1, p: int = 0, mode: str = "2/1"):
        super().__init__()
        self.conv = nn.Conv2d(cin, _pre(cout, mode), k, s, p)
        self.mfm = MFM(mode)

    def forward(self, x):
        return self.mfm(self.conv(x))


class Group(nn.Module):
    """1x1 MFM conv (network-in-network) then 3x3 MFM conv, as in the paper's 'group'."""

    def __init__(self, cin: int, cout: int, mode: str):
        super().__init__()
        self.a = MFMConv(cin, cin, 1, mode=mode)
        self.b = MFMConv(cin, cout, 3, 1, 1, mode=mode)

    def forward(self, x):
        return self.b(self.a(x))


class ResBlock(nn.Module):
    def __init__(self, c: int, mode: str):
        super().__init__()
        self.a = MFMConv(c, c, 3, 1, 1, mode=mode)
        self.b = MFMConv(c, c, 3, 1, 1, mode=mode)

    def forward(self, x):
        return x + self.b(self.a(x))


def _pool():
    # Ceil mode keeps 112 -> 56 -> 28 -> 14 -> 7 (the paper's max-pool + ceil).
    return nn.MaxPool2d(2, 2, ceil_mode=True)


class LightCNN(nn.Module):
    def __init__(self, depth: int = 9, input_size=(112, 112), embedding_size: int = 256, mfm: str = "2/1", dropout: float = 0.0):
        super().__init__()
        if depth not in (9, 29):
            raise ValueError(f"LightCNN depth must be 9 or 29, got {depth}")
        blocks = (0, 0, 0, 0) if depth == 9 else (1, 2, 3, 4)
        chans = [48, 96, 192, 128, 128]
        layers: list[nn.Module] = [MFMConv(3, chans[0], 5, 1, 2, mode=mfm), _pool()]
        cin = chans[0]
        for stage, cout in enumerate(chans[1:]):
            layers += [ResBlock(cin, mfm) for _ in range(blocks[stage])]
            layers.append(Group(cin, cout, mfm))
            cin = cout
            if stage != 2:  # pools after 96, 192 and the last 128 group (paper layout)
                layers.append(_pool())
        self.features = nn.Sequential(*layers)
        fh, fw = (-(-input_size[0] // 16), -(-input_size[1] // 16))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(cin * fh * fw, _pre(embedding_size, mfm))
        self.mfm = MFM(mfm)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.mfm(self.fc(self.dropout(x)))
