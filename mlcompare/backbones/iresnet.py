"""iResNet-18/50/100: the improved ResNet that insightface's ArcFace models train on 112 x 112 crops.

Duta et al. 2020, "Improved Residual Networks" (arXiv:2004.04989), as laid out in insightface's
``recognition/arcface_torch/backbones/iresnet.py`` (written here from that layout, not copied):
a 3x3 stem conv (64 channels, stride 1) + BN + PReLU, then four stages of widths 64, 128, 256,
512, each starting with a stride-2 unit, so 112 px -> 7 px. A unit is BN-Conv3x3-BN-PReLU-
Conv3x3(stride)-BN plus a 1x1-conv + BN shortcut where the shape changes. Units per stage:
iresnet18 [2, 2, 2, 2], iresnet50 [3, 4, 14, 3], iresnet100 [3, 13, 30, 3].

The output layer is ArcFace's "E" (Deng et al. 2019, sec. 3.2): BatchNorm2d, Dropout, FC on the
flattened 7 x 7 x 512 map, BatchNorm1d (its scale fixed at 1, as in arcface_torch). With a 512-d
embedding iresnet50 has 43.6M parameters, iresnet100 65.2M. Module names follow arcface_torch's
(``conv1``, ``layer1.0.bn1``, ``fc``, ``features``), so that one of its state dicts loads with
``pretrained = "PATH"``. Input ``[B, 3, H, W]`` in [-1, 1] (arcface_torch's ``(x / 255 - 0.5) / 0.5``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

LAYOUTS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
WIDTHS = (64, 128, 256, 512)


class IBasicBlock(nn.Module):
    """BN-Conv3x3-BN-PReLU-Conv3x3(stride)-BN, plus the input (through a 1x1 conv + BN where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """iResNet trunk + ArcFace's output layer E.

    Args:
        layers: units per stage (see :data:`LAYOUTS`).
        image_size: input height = width, 16 to 224 px (112 in insightface; the FC then sees 7 x 7).
        embedding_dim: size of the embedding (512 in insightface).
        dropout: dropout before the FC (arcface_torch: 0; 0.4 in the paper's large-data runs).
    Output ``[B, embedding_dim]``, not normalised.
    """

    def __init__(self, *, layers: tuple[int, ...], image_size: int = 112, embedding_dim: int = 512,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 16 <= image_size <= 224:
            raise ValueError(f"image_size must be 16-224 px, got {image_size}")
        if len(layers) != len(WIDTHS) or min(layers) < 1:
            raise ValueError(f"layers must be four positive unit counts, got {tuple(layers)}")
        self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0], eps=1e-5)
        self.prelu = nn.PReLU(WIDTHS[0])
        cin = WIDTHS[0]
        for i, (width, count) in enumerate(zip(WIDTHS, layers)):
            units = [IBasicBlock(cin if u == 0 else width, width, 2 if u == 0 else 1) for u in range(count)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
            cin = width
        side = image_size
        for _ in WIDTHS:  # a 3x3 stride-2 conv with padding 1 maps n px to ceil(n / 2)
            side = math.ceil(side / 2)
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * side * side, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        # torch's default initialisation, not arcface_torch's N(0, 0.1) convolutions: with those an
        # untrained iresnet100 in eval mode (running statistics 0 and 1) overflows to NaN.
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # arcface_torch keeps the embedding BN's scale at 1
        self.embedding_dim = embedding_dim
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(torch.flatten(self.dropout(self.bn2(x)), 1)))
