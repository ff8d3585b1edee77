"""MobileNet v1 (Howard et al. 2017) as a face embedder, with the paper's two knobs:
width multiplier alpha (channels x alpha) and resolution rho (input 112 x rho: 112/96/80/64).

Depthwise-separable convolutions with BatchNorm + ReLU as in the paper; the classifier is
replaced by global average pooling -> linear -> BatchNorm1d giving the embedding.
"""
from __future__ import annotations

import torch
from torch import nn

# (output channels, stride) of the 13 depthwise-separable layers (paper Table 1).
MOBILENET_V1_LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def _c(ch: int, alpha: float) -> int:
    return max(8, int(round(ch * alpha / 8)) * 8)


def _conv_bn(cin, cout, k, s, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    def __init__(self, alpha: float = 1.0, input_size=(112, 112), embedding_size: int = 128):
        super().__init__()
        cin = _c(32, alpha)
        layers = [_conv_bn(3, cin, 3, 2)]
        for ch, s in MOBILENET_V1_LAYERS:
            cout = _c(ch, alpha)
            layers += [_conv_bn(cin, cin, 3, s, groups=cin), _conv_bn(cin, cout, 1, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.pool(self.features(x)).flatten(1)))
