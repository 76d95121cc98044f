"""Input checks shared by the metrics: arrays in, one-line ValueErrors out.

Only numpy is imported here; torch tensors are recognised by duck typing so
that ``import evaluations`` never pays for importing torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRICS = ("cosine", "l2")


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view/copy of a numpy array, a torch tensor (any device) or a sequence."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not supported; use one of {list(METRICS)}")
    return metric


def embeddings(x: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """float32 C-contiguous [N, D] matrix, finite, non-empty unless allowed."""
    a = to_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D]; got shape {tuple(a.shape)}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers; got dtype {a.dtype}")
    if a.shape[1] == 0:
        raise ValueError(f"{name} has 0 dimensions (shape {tuple(a.shape)}); embeddings need D >= 1")
    if a.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {tuple(a.shape)}); it needs at least one row")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise ValueError(f"{name} contains NaN or inf (first at row {bad}); drop or fix those embeddings")
    return a


def labels(y: Any, name: str, n: int, n_name: str) -> np.ndarray:
    """1-D label vector of length ``n`` (any hashable-free dtype: ints or strings)."""
    a = to_numpy(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of length {n} (one label per row of {n_name}); got shape {tuple(a.shape)}")
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} labels but {n_name} has {n} rows; they must match")
    if a.dtype == object:
        a = a.astype(str)
    return a


def vector(x: Any, name: str, *, dtype: type | None = None) -> np.ndarray:
    a = to_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {tuple(a.shape)}")
    if dtype is not None:
        a = a.astype(dtype, copy=False)
    return a


def encode_labels(*arrays: np.ndarray) -> list[np.ndarray]:
    """Map labels (ints or strings) of several arrays to shared int64 codes 0..C-1."""
    joined = np.concatenate(arrays)
    _, codes = np.unique(joined, return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    out, start = [], 0
    for a in arrays:
        out.append(codes[start : start + len(a)])
        start += len(a)
    return out


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy; zero rows stay zero (cosine 0 to everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def scores_and_same(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pair scores as float64 and their genuine flags as bool: finite, as long as each other, not empty."""
    s = vector(scores, "scores")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"scores must hold numbers; got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"scores contains NaN or inf (first at index {int(np.flatnonzero(~np.isfinite(s))[0])}); fix those pairs' embeddings")
    y = vector(same, "same")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"same has {y.shape[0]} entries but scores has {s.shape[0]}; they must match (one flag per pair)")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("same must hold booleans (or 0/1): True for a genuine pair, False for an impostor pair")
        y = y.astype(bool)
    if s.shape[0] == 0:
        raise ValueError("scores is empty; verification needs at least one pair")
    return s, y
