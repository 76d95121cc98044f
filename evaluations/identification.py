"""1:N identification: closed-set CMC / rank-k and open-set DIR at FPIR (FRVT style)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from evaluations import _inputs
from evaluations.metric_warnings import UndefinedMetricWarning

CMC_LENGTH = 100
# Bytes of one probe-chunk x gallery score block: bounds identification's peak memory.
_SCORE_BLOCK_BYTES = 256 * 2**20


def _identity_scores(
    probes: np.ndarray, gallery: np.ndarray, starts: np.ndarray, metric: str
) -> Any:
    """Yield (start, stop, best) with best[p, c] = the best score of probe p against
    any gallery image of identity c (gallery rows sorted by identity, ``starts``
    = first row of each identity)."""
    g_sq = None if metric == "cosine" else np.einsum("ij,ij->i", gallery, gallery)
    chunk = max(1, _SCORE_BLOCK_BYTES // (4 * gallery.shape[0]))
    for start in range(0, probes.shape[0], chunk):
        block = probes[start : start + chunk]
        scores = block @ gallery.T
        if metric == "l2":  # -|p - g|^2, so that higher = closer for every metric
            scores *= 2.0
            scores -= g_sq[None, :]
            scores -= np.einsum("ij,ij->i", block, block)[:, None]
        yield start, start + block.shape[0], np.maximum.reduceat(scores, starts, axis=1)


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    n_val = int(math.ceil(fraction * n))
    return perm[:n_val], perm[n_val:]


def identification(
    gallery: Any,
    gallery_labels: Any,
    probes: Any,
    probe_labels: Any,
    *,
    ranks: Sequence[int] = (1, 5, 10),
    fpir: Sequence[float] = (1e-1, 1e-2),
    metric: str = "cosine",
    validation_fraction: float = 0.5,
    seed: int = 0,
) -> dict:
    """Closed-set rank-k / CMC over mated probes and open-set DIR at FPIR.

    Each probe is compared with every gallery image (exact, dense, in chunks of
    256 MiB of scores); an identity's score is its best image's score
    (``"cosine"``: cosine similarity; ``"l2"``: minus the squared distance).
    The rank of a mated probe is the number of gallery identities scoring at
    least as high as its true identity (ties count against the probe).

    Open set (only when some probe identities are absent from the gallery):
    the probes are split, with ``numpy.random.default_rng(seed)``, into a
    validation and a test part, separately for mated and non-mated probes
    (``ceil(validation_fraction * n)`` of each go to validation). For each FPIR
    f, the threshold tau is the ``floor(f * n)``-th highest top-1 score of the
    n validation non-mated probes, so that at most a fraction f of them score
    above it; DIR(f) is the fraction of TEST mated probes whose true identity is
    at rank 1 with a score above tau. f < 1/n is not measurable (None).

    Args:
        gallery: [G, D] embeddings; several images per identity allowed.
        gallery_labels: [G] identity labels (ints or strings).
        probes: [P, D] embeddings.
        probe_labels: [P] identity labels.
        ranks: ranks k reported as ``rank_k`` (fraction of mated probes at rank <= k).

    Returns:
        dict: ``rank_<k>`` for each k, ``cmc`` (float64 [L], cmc[i] = fraction of
        mated probes at rank <= i+1, L = min(gallery identities, max(100, max(ranks)))),
        ``n_mated``, ``n_nonmated``, ``dir_at_fpir`` ({fpir: DIR or None}; {} in a
        closed set).
    """
    metric = _inputs.check_metric(metric)
    g = _inputs.embeddings(gallery, "gallery")
    p = _inputs.embeddings(probes, "probes")
    if g.shape[1] != p.shape[1]:
        raise ValueError(f"gallery has {g.shape[1]} dimensions but probes have {p.shape[1]}; they must match")
    gl = _inputs.labels(gallery_labels, "gallery_labels", g.shape[0], "gallery")
    pl = _inputs.labels(probe_labels, "probe_labels", p.shape[0], "probes")
    ranks = tuple(ranks)
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise ValueError(f"ranks contains {r!r}; each rank must be a positive integer")
    fpir = tuple(float(f) for f in fpir)
    for f in fpir:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"fpir contains {f}; each false positive identification rate must be in (0, 1]")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction} must be in (0, 1)")

    g_codes, p_codes = _inputs.encode_labels(gl, pl)
    order = np.argsort(g_codes, kind="stable")
    g_sorted_codes = g_codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted_codes)) + 1]
    identities = g_sorted_codes[starts]  # column c of the identity scores <-> identities[c]
    n_identities = identities.shape[0]
    column = np.searchsorted(identities, p_codes)
    column = np.minimum(column, n_identities - 1)
    mated = identities[column] == p_codes

    g_rows = g[order]
    if metric == "cosine":
        g_rows, p = _inputs.normalise_rows(g_rows), _inputs.normalise_rows(p)

    rank = np.zeros(p.shape[0], dtype=np.int64)  # 0 for non-mated probes
    true_score = np.full(p.shape[0], -np.inf, dtype=np.float32)
    top1 = np.empty(p.shape[0], dtype=np.float32)
    for start, stop, best in _identity_scores(p, g_rows, starts, metric):
        rows = np.arange(stop - start)
        top1[start:stop] = best.max(axis=1)
        m = mated[start:stop]
        t = best[rows[m], column[start:stop][m]]
        true_score[start:stop][m] = t
        rank[start:stop][m] = np.count_nonzero(best[m] >= t[:, None], axis=1)

    n_mated = int(mated.sum())
    n_nonmated = int(p.shape[0] - n_mated)
    cmc_len = min(n_identities, max(CMC_LENGTH, max(ranks, default=1)))
    mated_rank = rank[mated]
    if n_mated == 0:
        warnings.warn("no probe identity is in the gallery: closed-set rank-k and CMC are undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
        cmc = np.full(cmc_len, np.nan)
    else:
        cmc = np.cumsum(np.bincount(np.minimum(mated_rank, cmc_len + 1), minlength=cmc_len + 2)[1 : cmc_len + 1]) / n_mated
    result: dict = {}
    for r in ranks:
        result[f"rank_{r}"] = float(np.mean(mated_rank <= r)) if n_mated else float("nan")
    result["cmc"] = cmc
    result["n_mated"] = n_mated
    result["n_nonmated"] = n_nonmated

    dir_at_fpir: dict = {}
    if n_nonmated > 0:
        rng = np.random.default_rng(seed)
        mated_idx, nonmated_idx = np.flatnonzero(mated), np.flatnonzero(~mated)
        _, mated_test = _split(mated_idx.shape[0], validation_fraction, rng)
        nonmated_val, _ = _split(nonmated_idx.shape[0], validation_fraction, rng)
        val_top1 = np.sort(top1[nonmated_idx[nonmated_val]])[::-1]
        test = mated_idx[mated_test]
        for f in fpir:
            n_val = val_top1.shape[0]
            if n_val == 0 or f < 1.0 / n_val:
                dir_at_fpir[f] = None
                continue
            allowed = int(math.floor(f * n_val))
            tau = val_top1[allowed] if allowed < n_val else -np.inf
            if test.shape[0] == 0:
                warnings.warn("no mated probe in the test split: DIR is undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
                dir_at_fpir[f] = float("nan")
            else:
                hit = (rank[test] == 1) & (true_score[test] > tau)
                dir_at_fpir[f] = float(np.mean(hit))
    result["dir_at_fpir"] = dir_at_fpir
    return result
