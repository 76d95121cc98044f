"""MobileFaceNet: a 1M-parameter face backbone for phones, with a global depthwise convolution head.

Chen, Liu, Gao, Han 2018, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face
Verification on Mobile Devices" (arXiv:1804.07573), Table 1, for 112 x 112 input:

    conv3x3 s2 64 -> depthwise conv3x3 64 -> bottleneck (expansion t, channels c, repeats n, stride s):
    (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)
    -> conv1x1 512 -> linear GDConv 7x7 (depthwise, kernel = the whole 7 x 7 map) -> linear conv1x1 128

with BN after every convolution and PReLU as the non-linearity (none after a bottleneck's
projection, GDConv and the last 1x1: they are linear). A bottleneck is MobileNetV2's (1x1 expand,
3x3 depthwise, 1x1 project), with the input added when the stride is 1 and the width unchanged.
The global depthwise conv weighs each position of the final map by its own learnt weight, which
the paper finds better than global average pooling for faces (the centre matters more than the
corners). About 1.0M parameters with a 128-d embedding (the paper: 0.99M). The last 1x1 conv
gives ``embedding_dim`` channels; a BatchNorm1d on them is the embedding, as in the paper.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s) of the paper's Table 1.
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def conv_bn(cin: int, cout: int, kernel: int, stride: int, *, groups: int = 1, prelu: bool = True,
            padding: int | None = None) -> nn.Sequential:
    """Conv (no bias) + BN, then PReLU unless the layer is linear."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout)]
    if prelu:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """MobileNetV2's inverted residual: 1x1 expand x ``t``, 3x3 depthwise (stride), linear 1x1 project."""

    def __init__(self, cin: int, cout: int, *, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.body = nn.Sequential(conv_bn(cin, hidden, 1, 1), conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, cout, 1, 1, prelu=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileFaceNet(nn.Module):
    """The paper's network; ``image_size`` 16 to 224 px (112 in the paper: the GDConv then spans 7 x 7).
    Output ``[B, embedding_dim]``, not normalised."""

    def __init__(self, *, image_size: int = 112, embedding_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        if not 16 <= image_size <= 224:
            raise ValueError(f"image_size must be 16-224 px, got {image_size}")
        layers: list[nn.Module] = [conv_bn(3, 64, 3, 2), conv_bn(64, 64, 3, 1, groups=64)]
        cin = 64
        for t, c, n, s in BOTTLENECKS:
            for i in range(n):
                layers.append(Bottleneck(cin, c, stride=s if i == 0 else 1, expansion=t))
                cin = c
        layers.append(conv_bn(cin, 512, 1, 1))
        self.trunk = nn.Sequential(*layers)
        side = image_size
        for _ in range(4):  # the stem and three stride-2 bottlenecks: n px -> ceil(n / 2) each
            side = math.ceil(side / 2)
        self.head = nn.Sequential(
            conv_bn(512, 512, side, 1, groups=512, prelu=False, padding=0),  # GDConv: one weight per channel and position
            nn.Dropout(dropout),  # not in the paper (0 there): the [backbone] dropout, as for the other backbones
            nn.Conv2d(512, embedding_dim, 1, bias=False),
            nn.Flatten(),
            nn.BatchNorm1d(embedding_dim),
        )
        self.embedding_dim = embedding_dim
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
