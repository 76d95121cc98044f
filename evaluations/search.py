"""Exact k-nearest-neighbour search on FAISS flat indexes, chunked and tie-stable."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from evaluations import _inputs

# faiss' GPU k-selection stops at 2048 neighbours; beyond that we search on the CPU.
GPU_MAX_K = 2048
DEFAULT_QUERY_CHUNK = 4096
_ADD_CHUNK = 65536
# faiss' CPU flat search multiplies blocks of 4096 queries x 1024 references by
# default; 16384-reference blocks (256 MiB of scores) make the GEMM about twice as
# fast on small-core machines. Set around our searches only (a process-wide setting).
_BLAS_DATABASE_BLOCK = 16384
_gpu_resources = None


@contextlib.contextmanager
def _blas_blocks():
    import faiss

    previous = faiss.cvar.distance_compute_blas_database_bs
    faiss.cvar.distance_compute_blas_database_bs = _BLAS_DATABASE_BLOCK
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_database_bs = previous


def _use_gpu(device: str) -> bool:
    import faiss

    if device not in ("auto", "cpu", "cuda", "gpu"):
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if device in ("cuda", "gpu") and not has_gpu:
        raise ValueError(f"device={device!r} but faiss sees no GPU (faiss.get_num_gpus() == 0); use device='auto' or 'cpu'")
    return has_gpu and device != "cpu"


def _build_index(references: np.ndarray, metric: str, gpu: bool):
    """Flat index holding the (normalised, for cosine) references, added in chunks
    so that the only full-size copy is the index's own storage."""
    import faiss

    d = references.shape[1]
    if gpu:
        global _gpu_resources
        if _gpu_resources is None:
            _gpu_resources = faiss.StandardGpuResources()
        index = (faiss.GpuIndexFlatIP if metric == "cosine" else faiss.GpuIndexFlatL2)(_gpu_resources, d)
    else:
        index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    for start in range(0, references.shape[0], _ADD_CHUNK):
        block = references[start : start + _ADD_CHUNK]
        index.add(_inputs.normalise_rows(block) if metric == "cosine" else block)
    return index


def _stable_order(scores: np.ndarray, indices: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row best-first, equal scores by increasing reference index."""
    key = -scores if metric == "cosine" else scores
    order = np.lexsort((indices, key), axis=-1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def _search_complete_ties(search, block: np.ndarray, k: int, n_ref: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row with the whole tie group at the k-th place seen, so that the
    lower reference indices win it (faiss' heaps break boundary ties by index in a
    metric-dependent direction). Searches k+1 and, for the rare rows whose k-th
    score still equals the last one found, searches again with twice as many."""
    out_scores = np.empty((block.shape[0], k), dtype=np.float32)
    out_indices = np.empty((block.shape[0], k), dtype=np.int64)
    pending = np.arange(block.shape[0])
    k_search = min(k + 1, n_ref)
    while pending.size:
        scores, indices = search(block[pending], k_search)
        if k_search == n_ref:
            complete = np.ones(pending.size, dtype=bool)
        elif metric == "cosine":
            complete = scores[:, -1] < scores[:, k - 1]
        else:
            complete = scores[:, -1] > scores[:, k - 1]
        out_scores[pending[complete]] = scores[complete, :k]
        out_indices[pending[complete]] = indices[complete, :k]
        pending = pending[~complete]
        k_search = min(2 * k_search, n_ref)
    return out_scores, out_indices


def knn(
    queries: Any,
    references: Any,
    k: int,
    *,
    metric: str = "cosine",
    exclude_self: bool = False,
    device: str = "auto",
    query_chunk: int = DEFAULT_QUERY_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest references of every query, best first.

    Args:
        queries: [Q, D] numpy array or torch tensor.
        references: [N, D] numpy array or torch tensor.
        k: neighbours per query, 1 <= k <= N (N - 1 with ``exclude_self``).
        metric: ``"cosine"``: score = <q/|q|, r/|r|> in [-1, 1], HIGHER is closer
            (faiss IndexFlatIP on L2-normalised rows); ``"l2"``: score =
            |q - r|^2, the SQUARED Euclidean distance, LOWER is closer
            (faiss IndexFlatL2).
        exclude_self: leave-one-out search of a set against itself: ``queries``
            must be the same rows as ``references``; row i never returns i.
        device: ``"auto"`` uses a faiss GPU index when ``faiss.get_num_gpus() > 0``
            (and k <= 2048, faiss' GPU limit; larger k is searched on the CPU),
            ``"cpu"`` forces the CPU, ``"cuda"`` requires a GPU.
        query_chunk: queries searched per faiss call.

    Returns:
        ``(scores, indices)``: float32 [Q, k] and int64 [Q, k]; row q is sorted
        best-first and equal scores are ordered by increasing reference index
        (also when a tie straddles the k-th place: k+1 neighbours are searched,
        more for the rows where the tie goes on past them).

    Peak extra memory (CPU) is about ``4*N*D`` bytes (the index's float32 copy of
    the references) + ``12*Q*k`` (the returned arrays) + ``4*query_chunk*(D + 3*k')``
    (one normalised query chunk and its sorted results, k' = k + exclude_self)
    + faiss' BLAS score block (4096 queries x 16384 references, float32 = 256 MiB,
    set around each search). For example 300,000 x 512 references searched by
    themselves with k = 100: about 0.6 + 0.36 + 0.25 GiB; 1,000,000 x 128
    references, 10,000 queries, k = 10: about 0.5 + 0.25 GiB. On the GPU the index lives in GPU memory.

    >>> import numpy as np
    >>> s, i = knn(np.eye(3), np.eye(3), 1, exclude_self=True)
    >>> i.ravel().tolist(), s.ravel().tolist()
    ([1, 0, 0], [0.0, 0.0, 0.0])
    """
    metric = _inputs.check_metric(metric)
    same_object = queries is references
    q = _inputs.embeddings(queries, "queries")
    r = q if same_object else _inputs.embeddings(references, "references")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions but references have {r.shape[1]}; they must match")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer")
    if isinstance(query_chunk, bool) or not isinstance(query_chunk, (int, np.integer)) or query_chunk < 1:
        raise ValueError(f"query_chunk={query_chunk!r} must be a positive integer")
    n_ref = r.shape[0]
    if exclude_self:
        if not same_object and (q.shape != r.shape or not np.array_equal(q, r)):
            raise ValueError("exclude_self=True needs queries to be the same rows as references (leave-one-out on one set)")
        if k > n_ref - 1:
            raise ValueError(f"k={k} is larger than the {n_ref - 1} other references available with exclude_self=True; use k <= {n_ref - 1}")
    elif k > n_ref:
        raise ValueError(f"k={k} is larger than the number of references ({n_ref}); use k <= {n_ref}")

    k_wanted = k + 1 if exclude_self else k
    gpu = _use_gpu(device) and k_wanted + 1 <= GPU_MAX_K
    index = _build_index(r, metric, gpu)
    cpu_index = None if gpu else index

    def search(block: np.ndarray, k_search: int) -> tuple[np.ndarray, np.ndarray]:
        nonlocal cpu_index
        if k_search > GPU_MAX_K and gpu:
            if cpu_index is None:
                cpu_index = _build_index(r, metric, False)
            use = cpu_index
        else:
            use = index
        with _blas_blocks():
            scores, indices = use.search(block, k_search)
        return _stable_order(scores, indices.astype(np.int64, copy=False), metric)

    n_q = q.shape[0]
    out_scores = np.empty((n_q, k), dtype=np.float32)
    out_indices = np.empty((n_q, k), dtype=np.int64)
    for start in range(0, n_q, query_chunk):
        stop = min(start + query_chunk, n_q)
        block = q[start:stop]
        if metric == "cosine":
            block = _inputs.normalise_rows(block)
        scores, indices = _search_complete_ties(search, block, k_wanted, n_ref, metric)
        if exclude_self:
            # Move the query's own row (if present) to the end, keeping the order of
            # the rest; when ties pushed it past k+1 the last neighbour is dropped.
            is_self = indices == np.arange(start, stop, dtype=np.int64)[:, None]
            order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(scores, order, axis=1)
            indices = np.take_along_axis(indices, order, axis=1)
        out_scores[start:stop] = scores
        out_indices[start:stop] = indices
    return out_scores, out_indices
