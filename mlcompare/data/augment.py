"""Train-time augmentation of a batch, drawn per step from the seed (``[train]`` options).

Every draw comes from a generator seeded by (seed, step, kind) and is made for the global batch,
so that every method sees the same augmented batches and the ranks' shares under torchrun make the
single-process batch, as the horizontal flip always has. Test images are never augmented.

* ``random_crop = [lo, hi]``: a random resized crop (Szegedy et al. 2015, torchvision's
  ``RandomResizedCrop``): a box of area ``a * S^2``, ``a ~ U[lo, hi]``, aspect ratio ``r``
  log-uniform in [3/4, 4/3], width ``sqrt(a r) S`` and height ``sqrt(a / r) S`` (each at most ``S``),
  placed uniformly, resampled (bilinear) to ``S`` x ``S``.
* ``color_jitter = j``: brightness, contrast and saturation each scaled by a factor drawn
  uniformly in ``[1 - j, 1 + j]`` (contrast and saturation about the image's grey mean / grey).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Distinct streams per kind of draw, so that adding one augmentation leaves another's draws as they were.
_FLIP, _CROP, _JITTER = 0, 1, 2
GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights


def generator(seed: int, step: int, kind: int) -> torch.Generator:
    """The generator of one step's draws of one kind (the flip's is the trainer's historical one)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step + kind * 7_919_000_003)


@dataclass(frozen=True)
class Augmentation:
    flip: bool = True
    random_crop: tuple[float, float] | None = None
    color_jitter: float = 0.0

    def __call__(self, images: torch.Tensor, *, seed: int, step: int, local: slice | torch.Tensor,
                 batch_size: int) -> torch.Tensor:
        """``images`` (uint8 ``[B, 3, S, S]``, this rank's ``local`` share of a ``batch_size`` batch) augmented."""
        if self.flip:
            flip = torch.rand(batch_size, generator=generator(seed, step, _FLIP))[local] < 0.5
            images = torch.where(flip[:, None, None, None].to(images.device), images.flip(-1), images)
        if self.random_crop is None and not self.color_jitter:
            return images
        x = images.float()
        if self.random_crop is not None:
            boxes = crop_boxes(batch_size, self.random_crop, generator(seed, step, _CROP))[local]
            x = resized_crops(x, boxes.to(x.device))
        if self.color_jitter:
            factors = 1 + self.color_jitter * (2 * torch.rand(batch_size, 3, generator=generator(seed, step, _JITTER)) - 1)
            x = jitter(x, factors[local].to(x.device))
        return x.round().clamp(0, 255).to(torch.uint8)


def crop_boxes(n: int, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """``[n, 4]`` boxes ``(x0, y0, w, h)`` as fractions of the image side (see the module docstring)."""
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=gen, dtype=torch.float64)
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(n, generator=gen, dtype=torch.float64)
    ratio = log_r.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    x0 = (1 - w) * torch.rand(n, generator=gen, dtype=torch.float64)
    y0 = (1 - h) * torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.stack([x0, y0, w, h], dim=1).float()


def resized_crops(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (float ``[B, C, S, S]``) cut to its box (``[B, 4]`` fractions) and resampled
    (bilinear) to ``S`` x ``S``. With ``align_corners=False`` the output pixel centres of a box
    ``(x0, y0, w, h)`` sample the input at ``x0 + w (i + 0.5) / S`` of the side, as a resize of the box does."""
    x0, y0, w, h = boxes.unbind(1)
    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    # grid_sample's coordinates run -1 .. 1 over the image: a box maps -1 .. 1 to its own span
    theta[:, 0, 0], theta[:, 0, 2] = w, 2 * x0 + w - 1
    theta[:, 1, 1], theta[:, 1, 2] = h, 2 * y0 + h - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation (``factors[:, 0..2]``) applied in that order to ``x`` in 0..255."""
    weights = torch.tensor(GREY, device=x.device, dtype=x.dtype)[None, :, None, None]
    b, c, s = (factors[:, i, None, None, None] for i in range(3))
    x = (x * b).clamp(0, 255)
    mean = (x * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * c + mean).clamp(0, 255)
    grey = (x * weights).sum(1, keepdim=True)
    return ((x - grey) * s + grey).clamp(0, 255)
