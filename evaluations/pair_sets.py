"""Every pair of a test set: the genuine pairs and enough impostors for a low FMR.

LFW's 3,000 impostor pairs put FMR 1e-3 on 3 false matches; all pairs of N images give
N(N-1)/2 comparisons, almost all impostors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluations import _inputs

_BLOCK_ELEMENTS = 1 << 22  # score block of rows x N: 16 MiB of float32


def all_pairs(
    embeddings: Any,
    labels: Any,
    *,
    metric: str = "cosine",
    max_impostors: int | None = None,
    seed: int = 0,
) -> dict:
    """Scores of all image pairs (i < j) of one set, with an optional cap on the impostors.

    All genuine pairs are kept. The impostor pairs are all kept, or, when there are more
    than ``max_impostors``, exactly ``max_impostors`` of them drawn uniformly without
    replacement (seeded). Scores are computed in blocks of rows of at most 2^22 scores,
    so memory is O(block + kept pairs), never O(N^2).

    Args:
        embeddings: [N, D] numpy array or torch tensor.
        labels: [N] identity labels (ints or strings).
        metric: ``"cosine"`` or ``"l2"`` (minus squared distance), as :func:`evaluations.pair_scores`.
        max_impostors: cap on the impostor pairs kept; None keeps them all.
        seed: of the impostor sample.

    Returns:
        dict with ``scores`` float32 [M], ``same`` bool [M], ``index_a``, ``index_b``
        int64 [M] (rows of ``embeddings``, index_a < index_b), pairs in row-major order
        (by index_a, then index_b); ``n_impostor_total`` (impostor pairs before the cap).

    >>> r = all_pairs([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [7, 7, 8])
    >>> r["same"].tolist(), r["index_a"].tolist(), r["index_b"].tolist(), r["scores"].tolist()
    ([True, False, False], [0, 0, 1], [1, 2, 2], [1.0, 0.0, 0.0])
    """
    metric = _inputs.check_metric(metric)
    x = _inputs.embeddings(embeddings, "embeddings")
    n = x.shape[0]
    (codes,) = _inputs.encode_labels(_inputs.labels(labels, "labels", n, "embeddings"))
    if max_impostors is not None and (isinstance(max_impostors, bool) or not isinstance(max_impostors, (int, np.integer)) or max_impostors < 0):
        raise ValueError(f"max_impostors={max_impostors!r} must be a number of pairs >= 0, or None for all")
    counts = np.bincount(codes)
    n_impostor_total = n * (n - 1) // 2 - int((counts * (counts - 1) // 2).sum())
    chosen = None
    if max_impostors is not None and n_impostor_total > max_impostors:
        chosen = np.sort(np.random.default_rng(seed).choice(n_impostor_total, size=max_impostors, replace=False))
    if metric == "cosine":
        x = _inputs.normalise_rows(x)
    sq = np.einsum("ij,ij->i", x, x)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    parts: list[tuple[np.ndarray, ...]] = []
    seen = 0  # impostor pairs passed so far, in row-major order
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        block = x[r0:r1] @ x.T
        if metric == "l2":
            block = -(sq[r0:r1, None] + sq[None, :] - 2.0 * block)
        upper = np.arange(n)[None, :] > np.arange(r0, r1)[:, None]
        same = codes[r0:r1, None] == codes[None, :]
        gi, gj = np.nonzero(upper & same)
        ii, ij = np.nonzero(upper & ~same)
        if chosen is not None:
            lo, hi = np.searchsorted(chosen, [seen, seen + ii.shape[0]])
            keep = chosen[lo:hi] - seen
            seen += ii.shape[0]
            ii, ij = ii[keep], ij[keep]
        a = np.concatenate([gi, ii]) + r0
        b = np.concatenate([gj, ij])
        order = np.lexsort((b, a))
        a, b = a[order], b[order]
        parts.append((a, b, block[a - r0, b].astype(np.float32), codes[a] == codes[b]))
    index_a, index_b, scores, same_flags = (np.concatenate([p[k] for p in parts]) for k in range(4))
    return {
        "scores": scores,
        "same": same_flags,
        "index_a": index_a.astype(np.int64),
        "index_b": index_b.astype(np.int64),
        "n_impostor_total": n_impostor_total,
    }
