"""Exact k-nearest-neighbour search on FAISS flat indexes, chunked and tie-stable,
optionally sharded over several GPUs, and the merge of per-shard results."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluations import _inputs

# faiss' GPU k-selection stops at 2048 neighbours; beyond that we search on the CPU.
GPU_MAX_K = 2048
DEFAULT_QUERY_CHUNK = 4096
_ADD_CHUNK = 65536
# faiss' CPU flat search multiplies blocks of 4096 queries x 1024 references by
# default; 16384-reference blocks (256 MiB of scores) make the GEMM faster on
# small-core machines (up to about 2x; 1.3-1.6x at 4096 x 100k x 128 on a busy
# 2-core box, with identical neighbours). Set around our searches only: it is a process-wide
# setting, so a lock keeps two threads from restoring each other's value.
_BLAS_DATABASE_BLOCK = 16384
_blas_lock = threading.Lock()
# One StandardGpuResources per GPU, created on first use and kept (they hold each
# GPU's temporary memory and are not safe to use from two threads at once).
_gpu_resources: dict[int, Any] = {}


@contextlib.contextmanager
def _blas_blocks():
    """Hold the block size at ``_BLAS_DATABASE_BLOCK`` for one search, then restore it.

    Searches in other threads wait meanwhile (each uses every core through OpenMP, so little is
    lost); without the lock, a thread entering while another searches would save our value as
    "previous" and leave it set for the whole process."""
    import faiss

    with _blas_lock:
        previous = faiss.cvar.distance_compute_blas_database_bs
        faiss.cvar.distance_compute_blas_database_bs = _BLAS_DATABASE_BLOCK
        try:
            yield
        finally:
            faiss.cvar.distance_compute_blas_database_bs = previous


def _use_gpu(device: str) -> bool:
    import faiss

    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda", "gpu") or _pinned_gpu(device) is not None):
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if device != "auto" and device != "cpu" and not has_gpu:
        raise ValueError(f"device={device!r} but faiss sees no GPU (faiss.get_num_gpus() == 0); use device='auto' or 'cpu'")
    pinned = _pinned_gpu(device)
    if pinned is not None and pinned >= faiss.get_num_gpus():
        raise ValueError(f"device={device!r} but faiss sees {faiss.get_num_gpus()} GPU(s); use cuda:0 .. cuda:{faiss.get_num_gpus() - 1}")
    return has_gpu and device != "cpu"


def _pinned_gpu(device: str) -> int | None:
    """``"cuda:N"`` -> N (one GPU, e.g. a torchrun rank's own); None for any other device."""
    name, _, number = device.partition(":")
    return int(number) if name == "cuda" and number.isdigit() else None


def _check_shards(shards: Any) -> None:
    if shards is None:
        return
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise ValueError(f"shards={shards!r} must be a positive integer or None")


def _n_shards(shards: int | None, gpu: bool, n_ref: int) -> int:
    """The number of reference shards: an explicit count (at most one shard per
    reference), else one per GPU on the GPU path (clamped to ``n_ref``), 1 on the CPU."""
    import faiss

    if shards is None:
        return max(1, min(faiss.get_num_gpus() if gpu else 1, n_ref))
    if shards > n_ref:
        raise ValueError(
            f"shards={shards} is more than the {n_ref} references; every shard needs at least one reference, use shards <= {n_ref}"
        )
    return int(shards)


def _flat_index(references: np.ndarray, metric: str, gpu: bool, device: int = 0):
    """Flat index holding the (normalised, for cosine) references, on GPU ``device`` or
    the CPU, added in chunks so that the only full-size copy is the index's own storage."""
    import faiss

    d = references.shape[1]
    if gpu:
        resources = _gpu_resources.get(device)
        if resources is None:
            resources = _gpu_resources[device] = faiss.StandardGpuResources()
        config = faiss.GpuIndexFlatConfig()
        config.device = device
        index = (faiss.GpuIndexFlatIP if metric == "cosine" else faiss.GpuIndexFlatL2)(resources, d, config)
    else:
        index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    for start in range(0, references.shape[0], _ADD_CHUNK):
        block = references[start : start + _ADD_CHUNK]
        index.add(_inputs.normalise_rows(block) if metric == "cosine" else block)
    return index


def _build_index(references: np.ndarray, metric: str, gpu: bool, shards: int = 1):
    """One flat index, or ``shards`` flat indexes on contiguous slices of the
    references (sizes differ by at most one) in a ``faiss.IndexShards`` that searches
    every shard and merges their top-k, shifting shard s's ids by the sizes of shards
    0..s-1 (``successive_ids``). On the GPU shard s lives on GPU ``s % ngpu``.

    Each shard is filled before ``add_shard``: ``IndexShards.add`` with successive ids
    splits every call across the shards, so adding in chunks would interleave them."""
    import faiss

    if shards == 1:
        return _flat_index(references, metric, gpu)
    n_ref, d = references.shape
    n_gpu = faiss.get_num_gpus() if gpu else 0
    # One thread per shard, except when a GPU holds two shards: they would share
    # that GPU's StandardGpuResources, which is not thread-safe.
    threaded = not gpu or shards <= n_gpu
    index = faiss.IndexShards(d, threaded, True)  # (d, threaded, successive_ids); SWIG takes no keywords
    bounds = [n_ref * s // shards for s in range(shards + 1)]
    for s in range(shards):
        part = references[bounds[s] : bounds[s + 1]]
        # faiss' Python wrapper keeps a reference to each added shard
        index.add_shard(_flat_index(part, metric, gpu, s % n_gpu if gpu else 0))
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
    shards: int | None = None,
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
            ``"cpu"`` forces the CPU, ``"cuda"`` requires a GPU, ``"cuda:N"``
            requires GPU N and searches there alone (one process per GPU, as
            under torchrun, each searching its own share).
        query_chunk: queries searched per faiss call.
        shards: split the references into this many contiguous slices (sizes
            differ by at most one), one flat index each, searched together by a
            ``faiss.IndexShards`` that merges their top-k. ``None`` (default): one
            shard per GPU faiss sees on the GPU path (so several GPUs each hold
            1/ngpu of the references), 1 on the CPU. On the GPU shard s goes to GPU
            ``s % ngpu``; on the CPU an explicit N builds N CPU flat indexes, which
            gains nothing (faiss already uses every core) but runs the sharded path
            without GPUs. An explicit value must be 1 <= shards <= N (a ValueError
            otherwise); the default is clamped to N. The neighbours do not
            depend on it (scores may differ in the last bit where the GEMM
            blocks differ, as between GPU and CPU).

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
    references, 10,000 queries, k = 10: about 0.5 + 0.25 GiB. On the GPU the index lives in GPU memory;
    on several GPUs each holds 1/ngpu of the references (``4*N*D/ngpu`` bytes) and the
    per-GPU results of a chunk are merged in host memory (``12*shards*query_chunk*(k'+1)``
    bytes). A search with k' + 1 > 2048 (or a tie that runs past 2048) is answered by
    one unsharded CPU index: another ``4*N*D`` bytes of host memory.

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
    _check_shards(shards)
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
    pinned = _pinned_gpu(device)
    if pinned is not None and shards not in (None, 1):
        raise ValueError(f"shards={shards} with device={device!r}: a search pinned to one GPU is not sharded; use shards=None")
    index = _flat_index(r, metric, gpu, pinned) if pinned is not None else _build_index(r, metric, gpu, _n_shards(shards, gpu, n_ref))
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


def merge_knn(parts: Sequence[tuple[Any, Any]], k: int, *, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Global top-k from the top-k of each shard of the references.

    For searches split by reference: each process (one per CPU or GPU) holds a
    contiguous slice ``references[start:stop]``, runs ``knn(queries, slice,
    min(k, stop - start))``, adds ``start`` to the indices, and rank 0 merges the
    gathered pairs here.

    Rows are ordered as :func:`knn` orders them: by the key
    ``(-score, index)`` for ``"cosine"`` (higher is closer) or ``(score, index)``
    for ``"l2"`` (squared distance, lower is closer), lexicographically. The merge
    is exact: this key is a total order on a query's references, and a reference
    among the global k first has fewer than k references before it, so fewer than
    k before it in its own slice, so it is in that slice's tie-stable top-k (a
    contiguous slice keeps the order of the indices, so its local ties are broken
    as the global ones). Sorting the union of the parts by the key therefore puts
    the global top-k first.

    Args:
        parts: non-empty list of ``(scores, indices)`` pairs, numpy arrays or torch
            tensors, each [Q, k_i] for the same Q queries, indices already global
            reference ids (>= 0, each id in at most one part of a row). Exact when
            part i is its slice's top ``min(k, slice size)`` or more; parts that
            are shorter give the top-k of the candidates they hold.
        k: neighbours per query, 1 <= k <= sum of the k_i.
        metric: ``"cosine"`` or ``"l2"``, as given to :func:`knn` (it sets the
            direction of "best"; scores are not recomputed).

    Returns:
        ``(scores, indices)``: float32 [Q, k] and int64 [Q, k], best first, equal
        scores by increasing index.

    Leave-one-out (``exclude_self``) over shards: search ``min(k + 1, slice size)``
    per slice, merge ``k + 1`` and drop each query's own index.

    >>> import numpy as np
    >>> a = (np.array([[0.75, 0.25]]), np.array([[3, 4]]))  # references[0:5]
    >>> b = (np.array([[0.75, 0.5]]), np.array([[6, 8]]))  # references[5:10], local ids + 5
    >>> s, i = merge_knn([a, b], 3)
    >>> i.tolist(), s.tolist()
    ([[3, 6, 8]], [[0.75, 0.75, 0.5]])
    """
    metric = _inputs.check_metric(metric)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer")
    if not isinstance(parts, (list, tuple)):
        raise ValueError(f"parts must be a list of (scores, indices) pairs; got {type(parts).__name__}")
    if len(parts) == 0:
        raise ValueError("parts is empty; it needs at least one (scores, indices) pair")
    all_scores, all_indices, widths = [], [], []
    n_q = None
    for p, part in enumerate(parts):
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            raise ValueError(f"parts[{p}] must be a (scores, indices) pair; got {type(part).__name__}")
        scores, indices = _inputs.to_numpy(part[0]), _inputs.to_numpy(part[1])
        if scores.ndim != 2:
            raise ValueError(f"parts[{p}] scores must be a 2-D array [Q, k_i]; got shape {tuple(scores.shape)}")
        if indices.shape != scores.shape:
            raise ValueError(f"parts[{p}] has scores of shape {tuple(scores.shape)} but indices of shape {tuple(indices.shape)}; they must match")
        if n_q is None:
            n_q = scores.shape[0]
        elif scores.shape[0] != n_q:
            raise ValueError(f"parts[{p}] has {scores.shape[0]} query rows but parts[0] has {n_q}; every part must answer the same queries")
        if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
            raise ValueError(f"parts[{p}] scores must hold numbers; got dtype {scores.dtype}")
        if not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"parts[{p}] indices must be integers; got dtype {indices.dtype}")
        scores = scores.astype(np.float32, copy=False)
        finite = np.isfinite(scores).all(axis=1)
        if not finite.all():
            raise ValueError(f"parts[{p}] scores contain NaN or inf (first at row {int(np.flatnonzero(~finite)[0])})")
        if indices.size and indices.min() < 0:
            raise ValueError(f"parts[{p}] holds a negative index ({int(indices.min())}); indices must be global reference ids >= 0")
        all_scores.append(scores)
        all_indices.append(indices.astype(np.int64, copy=False))
        widths.append(scores.shape[1])
    total = sum(widths)
    if k > total:
        raise ValueError(f"k={k} is larger than the {total} candidates per query in parts (widths {widths}); use k <= {total}")
    scores = np.concatenate(all_scores, axis=1)
    indices = np.concatenate(all_indices, axis=1)
    ids = np.sort(indices, axis=1)
    repeated = ids[:, 1:] == ids[:, :-1]
    if repeated.any():
        q, j = np.argwhere(repeated)[0]
        raise ValueError(
            f"reference index {int(ids[q, j])} appears twice in row {int(q)} of parts; "
            "shift each part's indices to global ids (add its slice's start) and give each slice once"
        )
    scores, indices = _stable_order(scores, indices, metric)
    return np.ascontiguousarray(scores[:, :k]), np.ascontiguousarray(indices[:, :k])
