"""Leave-one-out retrieval on one labelled set: P@1, R-Precision, MAP@R, Recall@K, NMI."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from evaluations import _inputs
from evaluations.metric_warnings import UndefinedMetricWarning
from evaluations.search import knn

# Rows of the [Q, k] neighbour-label matrix scored at once (bounds temporaries).
_ROW_CHUNK = 16384


def _nmi(x: np.ndarray, codes: np.ndarray, n_classes: int, metric: str, seed: int) -> float:
    import faiss
    from sklearn.metrics import normalized_mutual_info_score

    if n_classes >= x.shape[0]:  # every point its own class: clustering says nothing
        return float("nan")
    if n_classes == 1:
        return float(normalized_mutual_info_score(codes, np.zeros_like(codes)))
    data = _inputs.normalise_rows(x) if metric == "cosine" else x
    kmeans = faiss.Kmeans(data.shape[1], n_classes, niter=20, seed=seed, min_points_per_centroid=1, verbose=False)
    kmeans.train(data)
    _, assignment = kmeans.index.search(data, 1)
    return float(normalized_mutual_info_score(codes, assignment.ravel()))


def retrieval(
    embeddings: Any,
    labels: Any,
    *,
    k: int | None = None,
    metric: str = "cosine",
    recall_at: Sequence[int] = (1, 2, 4, 8),
    nmi: bool = True,
    seed: int = 0,
    search: Callable[..., tuple[np.ndarray, np.ndarray]] = knn,
) -> dict:
    """Leave-one-out retrieval metrics of a labelled set against itself.

    Each embedding queries all the others (:func:`evaluations.knn` with
    ``exclude_self=True``). A query whose class has no other member is excluded
    from every metric below (it can retrieve nothing relevant). With R = the
    size of the query's class minus one (the relevant items):

    * ``precision_at_1``: fraction of queries whose nearest neighbour shares their label.
    * ``r_precision``: mean over queries of (relevant among the first R neighbours) / R.
    * ``map_at_r``: mean over queries of (1/R) * sum_{i<=R} P(i) * rel(i), P(i) =
      precision of the first i neighbours, rel(i) = 1 if neighbour i is relevant
      (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020).
      These three equal pytorch-metric-learning's AccuracyCalculator
      ``precision_at_1``, ``r_precision`` and ``mean_average_precision_at_r``
      with its defaults (query set = reference set, which its FaissKNN searches
      with squared L2 on the raw embeddings: use ``metric="l2"``, or normalised
      embeddings, to reproduce its numbers).
    * ``recall_at``: {K: Recall@K} in the METRIC-LEARNING sense (Oh Song et al.,
      CVPR 2016 and the papers since): the fraction of queries with AT LEAST ONE
      same-label item among their K nearest neighbours. This is not the
      information-retrieval recall (relevant retrieved / all relevant).
    * ``nmi``: normalised mutual information (sklearn) between the labels and a
      faiss k-means clustering with as many clusters as classes (on normalised
      embeddings for ``metric="cosine"``; 20 iterations, seeded; None if
      ``nmi=False``). It is the costly part on large sets (O(20 * N * classes * D):
      20,000 x 128 with 2,000 classes takes ~8 s on 2 cores, the rest ~1.5-3 s);
      pass ``nmi=False`` where it is not reported.

    Args:
        embeddings: [N, D] numpy array or torch tensor.
        labels: [N] class labels (ints or strings).
        k: neighbours searched per query. None (default): max(largest class - 1,
            max(recall_at)), which makes the metrics exact. A smaller k truncates
            R-Precision and MAP@R as AccuracyCalculator does for an int k (warning).
        metric: ``"cosine"`` or ``"l2"`` (squared Euclidean distance).
        search: the neighbour search, called as ``search(x, x, k, metric=metric,
            exclude_self=True)`` and returning what :func:`evaluations.knn` returns
            (default: ``knn`` itself; pass e.g. a search whose references are split
            over processes, merged with :func:`evaluations.merge_knn`).

    Returns:
        dict of Python floats: ``precision_at_1``, ``r_precision``, ``map_at_r``,
        ``recall_at`` ({K: float}), ``nmi``, plus ``n_queries`` (queries scored).
    """
    metric = _inputs.check_metric(metric)
    x = _inputs.embeddings(embeddings, "embeddings")
    y = _inputs.labels(labels, "labels", x.shape[0], "embeddings")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"embeddings has {n} row; leave-one-out retrieval needs at least 2")
    recall_at = tuple(recall_at)
    for kk in recall_at:
        if isinstance(kk, bool) or not isinstance(kk, (int, np.integer)) or not 1 <= kk <= n - 1:
            raise ValueError(f"recall_at contains {kk!r}; each K must be an integer in [1, {n - 1}]")

    (codes,) = _inputs.encode_labels(y)
    counts = np.bincount(codes)
    relevant = counts[codes] - 1  # R of each query
    queries = np.flatnonzero(relevant > 0)
    needed = max(int(relevant.max()), max(recall_at, default=1))
    if k is None:
        k = min(needed, n - 1)
    elif isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k={k!r} must be None or an integer in [1, {n - 1}]")
    elif k < needed:
        warnings.warn(
            f"k={k} is below the largest class size - 1 or max(recall_at) ({needed}): R-Precision, MAP@R and Recall@K are truncated; use k=None",
            UserWarning,
            stacklevel=2,
        )

    result: dict = {}
    if queries.size == 0:
        warnings.warn("every class has a single member: retrieval metrics are undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
        nan = float("nan")
        result.update(precision_at_1=nan, r_precision=nan, map_at_r=nan, recall_at={kk: nan for kk in recall_at})
    else:
        _, neighbours = search(x, x, int(k), metric=metric, exclude_self=True)
        p1 = rp = ap = 0.0
        hits_at = {kk: 0 for kk in recall_at}
        ranks = np.arange(1, k + 1, dtype=np.float64)
        for start in range(0, queries.size, _ROW_CHUNK):
            q = queries[start : start + _ROW_CHUNK]
            match = codes[neighbours[q]] == codes[q][:, None]
            r = relevant[q]
            within_r = match & (ranks[None, :] <= r[:, None])
            p1 += float(match[:, 0].sum())
            rp += float(np.sum(within_r.sum(axis=1) / np.minimum(r, k)))
            precision = np.cumsum(within_r, axis=1) / ranks[None, :]
            ap += float(np.sum((precision * within_r).sum(axis=1) / r))
            for kk in recall_at:
                hits_at[kk] += int(np.any(match[:, : min(kk, k)], axis=1).sum())
        m = float(queries.size)
        result.update(
            precision_at_1=p1 / m,
            r_precision=rp / m,
            map_at_r=ap / m,
            recall_at={kk: hits_at[kk] / m for kk in recall_at},
        )
    result["nmi"] = _nmi(x, codes, int(counts.size), metric, seed) if nmi else None
    result["n_queries"] = int(queries.size)
    return result
