"""Counter-based random numbers for synthfaces: a value depends only on its key, never on order.

Why not ``torch.Generator``: image ``k`` of identity ``j`` must be the same in a 100-identity and a
1,000-identity set, and rendering is batched. A generator's output depends on how many numbers were
drawn before; a hash of ``(seed, stream, j, k, variable)`` does not, and it vectorises.

The hash is Chris Wellons' ``lowbias32`` on 32-bit values held in int64 tensors. The 32-bit
products are split in 16-bit halves so no int64 product overflows: the numbers are the same on
every device and platform.
"""
from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``(x * constant) mod 2**32`` for ``0 <= x < 2**32`` without int64 overflow."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32: int64 tensor of values in ``[0, 2**32)`` -> well-mixed values in the same range."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def keys(seed: int, stream: int, *parts: torch.Tensor) -> torch.Tensor:
    """One key per element of ``parts`` (broadcast), chaining the hash over seed, stream and parts."""
    key = hash32(torch.tensor([(seed * 0x9E3779B1 + stream) & MASK32], dtype=torch.int64))
    for part in parts:
        key = hash32(key ^ hash32(part.to(torch.int64) + 0x632BE5AB))
    return key


def uniform(key: torch.Tensor, count: int) -> torch.Tensor:
    """``[len(key), count]`` float64 uniforms in ``[0, 1)``; column ``i`` is variable ``i`` of each key."""
    variables = hash32(torch.arange(count, dtype=torch.int64) * 0x2545F491 + 0x5BD1E995)
    bits = hash32(key.reshape(-1, 1) ^ variables.reshape(1, -1))
    return (bits.to(torch.float64) + 0.5) / 2.0**32


def normal(key: torch.Tensor, count: int) -> torch.Tensor:
    """``[len(key), count]`` standard normals (Box-Muller on two independent uniform columns)."""
    u = uniform(key, 2 * count)
    radius = torch.sqrt(-2.0 * torch.log(u[:, :count]))
    return radius * torch.cos(2.0 * math.pi * u[:, count:])
