"""Scores of row pairs (a[i], b[i]): what 1:1 verification thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluations import _inputs

_CHUNK = 65536


def pair_scores(a: Any, b: Any, *, metric: str = "cosine") -> np.ndarray:
    """Similarity of each row pair, higher = more alike.

    Args:
        a, b: [P, D] numpy arrays or torch tensors; row i of ``a`` pairs with row i of ``b``.
        metric: ``"cosine"``: <a/|a|, b/|b|> in [-1, 1]; ``"l2"``: -|a - b|^2
            (the NEGATIVE squared Euclidean distance, so that higher = more similar,
            as ``verification`` expects).

    Returns:
        float32 [P].

    >>> pair_scores([[1.0, 0.0], [3.0, 4.0]], [[2.0, 0.0], [0.0, 1.0]]).tolist()
    [1.0, 0.800000011920929]
    """
    metric = _inputs.check_metric(metric)
    x = _inputs.embeddings(a, "a")
    y = _inputs.embeddings(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a has shape {tuple(x.shape)} but b has shape {tuple(y.shape)}; pairs need equal shapes")
    out = np.empty(x.shape[0], dtype=np.float32)
    for start in range(0, x.shape[0], _CHUNK):
        xs, ys = x[start : start + _CHUNK], y[start : start + _CHUNK]
        if metric == "cosine":
            out[start : start + _CHUNK] = np.einsum("ij,ij->i", _inputs.normalise_rows(xs), _inputs.normalise_rows(ys))
        else:
            diff = xs - ys
            out[start : start + _CHUNK] = -np.einsum("ij,ij->i", diff, diff)
    return out
