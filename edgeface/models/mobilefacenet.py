"""MobileFaceNet (Chen et al., "MobileFaceNets", CCBR 2018).

Inverted residual bottlenecks with PReLU, a global depthwise convolution (GDC) over the
final 7x7 (or 7x6 for 112x96 input) map instead of average pooling, and a linear 1x1
projection to the embedding. The GDC kernel follows the input size, so the same module
serves the ArcFace 112x112 and the SphereFace 112x96 crops.
"""
from __future__ import annotations

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 1.
MOBILEFACENET_SETTING = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]


class ConvBNAct(nn.Module):
    def __init__(self, cin: int, cout: int, k, s: int = 1, p=0, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, mid: int | None = None):
        super().__init__()
        mid = cin * expansion if mid is None else mid  # a channel-pruned bottleneck has fewer expansion channels
        self.residual = stride == 1 and cin == cout
        self.expand = ConvBNAct(cin, mid, 1)
        self.depthwise = ConvBNAct(mid, mid, 3, stride, 1, groups=mid)
        self.project = ConvBNAct(mid, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    def __init__(self, input_size: tuple[int, int] = (112, 112), embedding_size: int = 128, width: int = 64, setting=None,
                 mid_channels: list[int] | None = None):
        super().__init__()
        setting = setting or MOBILEFACENET_SETTING
        self.stem = ConvBNAct(3, width, 3, 2, 1)
        self.stem_dw = ConvBNAct(width, width, 3, 1, 1, groups=width)
        n_blocks = sum(n for _, _, n, _ in setting)
        if mid_channels is not None and len(mid_channels) != n_blocks:
            raise ValueError(f"mid_channels lists {len(mid_channels)} widths, MobileFaceNet has {n_blocks} bottlenecks")
        blocks, cin = [], width
        for t, c, n, s in setting:
            for i in range(n):
                mid = int(mid_channels[len(blocks)]) if mid_channels is not None else None
                blocks.append(Bottleneck(cin, c, s if i == 0 else 1, t, mid))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv_expand = ConvBNAct(cin, 512, 1)
        # The feature map is input/16 on each side (strides 2, 2, 2, 2).
        fh, fw = -(-input_size[0] // 16), -(-input_size[1] // 16)
        self.gdc = ConvBNAct(512, 512, (fh, fw), groups=512, act=False)
        self.embedding = ConvBNAct(512, embedding_size, 1, act=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem_dw(self.stem(x)))
        x = self.embedding(self.gdc(self.conv_expand(x)))
        return x.flatten(1)


def build_pruned_mobilefacenet(input_size=(112, 112), embedding_size: int = 128, mid_channels: list[int] | None = None, width: int = 64, setting=None, **_) -> nn.Module:
    """MobileFaceNet whose bottlenecks have the given expansion widths (arch 'mobilefacenet_pruned',
    written by `edgeface prune --level channel`)."""
    return MobileFaceNet(input_size=tuple(input_size), embedding_size=embedding_size, width=width,
                         setting=[tuple(s) for s in setting] if setting else None, mid_channels=mid_channels)
