"""A small ResNet for 32-112 px faces, with the embedding head used in ArcFace.

The head is ArcFace's "E" output layer (Deng et al. 2019, sec. 3.2): BatchNorm2d, Dropout,
flatten, fully connected, BatchNorm1d. The embedding is that BN's output, so every loss
(classification or pair) is trained on the same representation.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class BasicBlock(nn.Module):
    """The improved residual unit of ArcFace (BN-Conv-BN-PReLU-Conv-BN), stride on the second conv."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResNetFace(nn.Module):
    """ResNet trunk + ArcFace embedding head.

    Args:
        image_size: input height = width, 16 to 224 px. Stages halve the map until it is at most
            7 px wide (as ArcFace's 112 -> 7), so the head's FC sees a small spatial map.
        widths: channels of the four stages.
        blocks: residual blocks per stage.
        embedding_dim: size of the embedding (the head's output).
        dropout: dropout before the FC (ArcFace uses 0.4 on large data; 0 for tiny budgets).
    Input ``[B, 3, H, W]`` float in [-1, 1]; output ``[B, embedding_dim]`` (not normalised:
    normalisation belongs to the loss and the evaluation).
    """

    def __init__(self, *, image_size: int = 112, widths: tuple[int, ...] = (32, 64, 128, 256),
                 blocks: tuple[int, ...] = (1, 2, 2, 1), embedding_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        if not 16 <= image_size <= 224:
            raise ValueError(f"image_size must be 16-224 px, got {image_size}")
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {tuple(widths)} and blocks {tuple(blocks)} must have the same, non-zero length")
        halvings = max(1, math.ceil(math.log2(image_size / 7)))
        stage_strides = [1] * len(widths)
        for i in range(min(halvings, len(widths))):
            stage_strides[len(widths) - 1 - i] = 2
        stem_stride = 2 if halvings > len(widths) else 1
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])]
        cin = widths[0]
        for width, count, stride in zip(widths, blocks, stage_strides):
            for b in range(count):
                layers.append(BasicBlock(cin, width, stride if b == 0 else 1))
                cin = width
        self.trunk = nn.Sequential(*layers)
        with torch.no_grad():
            side = self.trunk(torch.zeros(1, 3, image_size, image_size)).shape[-1]
        self.head = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(cin * side * side, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        self.embedding_dim = embedding_dim
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
