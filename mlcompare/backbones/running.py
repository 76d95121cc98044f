"""How every backbone is run: the precision (autocast), the input scaling and batched embedding."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from mlcompare.config import limits

# --precision names (mlcompare.config.limits, in its order) -> autocast dtypes (fp32: no autocast at all).
PRECISIONS: dict[str, torch.dtype | None] = dict(zip(limits.PRECISIONS, (None, torch.bfloat16, torch.float16), strict=True))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type at ``precision``; a no-op context for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def to_input(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> ``dtype`` in [-1, 1], the backbone's input (float64 for a model
    in float64: the distributed-step test compares steps in double precision)."""
    return images.to(dtype).div_(127.5).sub_(1.0)


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, *, device: torch.device, batch_size: int = 256,
          precision: str = "fp32") -> torch.Tensor:
    """Embeddings ``[N, D]`` (float32, CPU, not normalised) of uint8 images, in eval mode,
    the backbone run under autocast at ``precision`` as in training."""
    was_training = model.training
    model.eval()
    with autocast(device, precision):
        out = [model(to_input(images[i:i + batch_size].to(device)).contiguous(memory_format=torch.channels_last)).float().cpu()
               for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)
