"""``digits``: scikit-learn's bundled 8x8 handwritten digits, a tiny sanity set (10 'identities')."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcompare.data.facedata import FaceData


def load(*, size: int) -> FaceData:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: nothing is downloaded

    bunch = load_digits()
    grey = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    images = (grey.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    return FaceData(images, torch.tensor(bunch.target, dtype=torch.int64), [str(d) for d in range(10)], "digits")
