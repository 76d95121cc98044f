"""k-nearest-neighbour search at reduced precision (bf16/fp16), for large searches on a GPU.

The exact search (:func:`evaluations.search.knn`) multiplies in float32. Tensor cores multiply
bf16/fp16 many times faster (H100: ~36 TFLOP/s fp32 SIMT vs ~700+ TFLOP/s bf16 dense), at the
price of rounding every input to 8 (bf16) or 11 (fp16) significant bits. Here the references are
stored once at reduced precision, each block of queries is multiplied by blocks of references
(torch matmul, float32 accumulation) and only each block's top candidates are kept (top-k per
block, then merged), so the ``[Q, N]`` score matrix never exists: the naive
``(q @ r.T).topk(k)`` needs ``4*Q*N`` bytes (40 GB for 10,000 x 1,000,000).

With ``refine`` (default) the ``k + extra`` best candidates of each query are re-scored in float32
against the original references and re-sorted, so returned scores are exact float32 scores and
the order is wrong only when a true neighbour was not among the candidates at all.

Imports only numpy at import time; torch (and faiss, for ``backend="faiss"``) when called.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluations import _inputs

DTYPES = ("bf16", "fp16")
BACKENDS = ("torch", "faiss")
DEFAULT_QUERY_CHUNK = 4096
# references per block: the score block is query_chunk x chunk at 2 bytes (GPU: 2 GiB; CPU: 128 MiB)
DEFAULT_CHUNK = {"cuda": 1 << 18, "cpu": 1 << 14}
FP16_MAX = 65504.0
GPU_MAX_K = 2048  # faiss' GPU k-selection limit


def _positive_int(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")


def _as_tensor(x: Any, name: str):
    """float32 torch tensor on its own device (torch input) or a zero-copy view of checked numpy input."""
    import torch

    if isinstance(x, torch.Tensor):
        if x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array [N, D]; got shape {tuple(x.shape)}")
        if x.shape[1] == 0 or x.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); it needs at least one row and D >= 1")
        if x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"{name} must hold real numbers; got dtype {x.dtype}")
        x = x.detach()
        if not bool(torch.isfinite(x).all()):
            bad = int(torch.nonzero(~torch.isfinite(x).all(dim=1))[0])
            raise ValueError(f"{name} contains NaN or inf (first at row {bad}); drop or fix those embeddings")
        return x.float()
    return torch.from_numpy(_inputs.embeddings(x, name))


def _resolve_device(device: str):
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def _normalise(x):
    import torch.nn.functional as F

    return F.normalize(x, dim=1, eps=1e-12)  # zero rows stay zero, as _inputs.normalise_rows


def _merge_topk(best, scores, indices, k: int):
    """Keep the ``k`` largest of the running best and a new block's candidates."""
    import torch

    if best is not None:
        scores = torch.cat([best[0], scores], dim=1)
        indices = torch.cat([best[1], indices], dim=1)
    top, where = scores.topk(min(k, scores.shape[1]), dim=1)
    return top, indices.gather(1, where)


def _stable_best_first(key, indices, k: int):
    """Rows sorted by ``key`` descending, equal keys by increasing index; first ``k`` columns."""
    import torch

    by_index = indices.argsort(dim=1)
    key, indices = key.gather(1, by_index), indices.gather(1, by_index)
    order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :k]
    return key.gather(1, order), indices.gather(1, order)


def knn_reduced(
    queries: Any,
    references: Any,
    k: int,
    *,
    metric: str = "cosine",
    dtype: str = "bf16",
    device: str = "auto",
    backend: str = "torch",
    chunk: int | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    refine: bool = True,
    extra: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest references of every query, searched at reduced precision, best first.

    Args:
        queries: [Q, D] numpy array or torch tensor (any device).
        references: [N, D] numpy array or torch tensor (any device); kept as given for ``refine``.
        k: neighbours per query, 1 <= k <= N.
        metric: ``"cosine"`` (score <q/|q|, r/|r|>, higher is closer) or ``"l2"`` (squared
            Euclidean distance, lower is closer), as :func:`evaluations.knn`.
        dtype: ``"bf16"`` or ``"fp16"``: the precision of the stored references and the products.
            fp16 keeps 3 more significant bits but overflows past 65504: with ``metric="l2"``
            every ``|q| * |r|`` must stay below it (checked).
        device: ``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"`` or ``"cuda"``. On the
            CPU bf16 is fast where the CPU has bf16 instructions; fp16 is emulated there (slow).
        backend: ``"torch"`` (blocked matmul + top-k) or ``"faiss"`` (a faiss GPU flat index with
            float16 storage; needs the faiss GPU build, a GPU it sees, ``dtype="fp16"`` and
            candidates <= 2048).
        chunk: references per block (default 262,144 on CUDA, 16,384 on the CPU); the score block
            is ``query_chunk x chunk`` at 2 bytes.
        query_chunk: queries per block.
        refine: re-score the candidates in float32 against ``references`` and re-sort them.
        extra: candidates beyond ``k`` kept for ``refine`` (default ``max(k, 16)``).

    Returns:
        ``(scores, indices)``: float32 [Q, k] and int64 [Q, k] numpy arrays, as
        :func:`evaluations.knn`: best first, equal scores by increasing reference index. With
        ``refine`` the scores are float32 scores; without it they are the reduced-precision ones,
        which tie often, and a tie at the k-th place keeps an arbitrary one of the tied references.

    Memory on the search device: ``2*N*D`` bytes (the reduced references; + ``4*N`` for l2's
    norms) + the score block + ``query_chunk * (k + extra) * D * 4`` bytes for ``refine``.
    Agreement with the exact search is measured by ``tests/benchmarks/bench_search.py``.

    >>> import numpy as np
    >>> s, i = knn_reduced(np.eye(3), np.eye(3), 1, device="cpu")
    >>> i.ravel().tolist(), s.ravel().tolist()
    ([0, 1, 2], [1.0, 1.0, 1.0])
    """
    import torch

    metric = _inputs.check_metric(metric)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {list(DTYPES)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; use one of {list(BACKENDS)}")
    _positive_int(k, "k")
    _positive_int(chunk, "chunk", allow_none=True)
    _positive_int(query_chunk, "query_chunk")
    _positive_int(extra, "extra", allow_none=True)
    dev = _resolve_device(device)
    q = _as_tensor(queries, "queries")
    r = _as_tensor(references, "references")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions but references have {r.shape[1]}; they must match")
    n_ref = r.shape[0]
    if k > n_ref:
        raise ValueError(f"k={k} is larger than the number of references ({n_ref}); use k <= {n_ref}")
    if dtype == "fp16" and metric == "l2":
        largest = float(q.norm(dim=1).max()) * float(r.norm(dim=1).max())
        if largest >= FP16_MAX:
            raise ValueError(f"dtype='fp16' with metric='l2': |q|*|r| reaches {largest:.3g}, past fp16's 65504; "
                             "use dtype='bf16' or scale the embeddings down")
    candidates = min(n_ref, k + (max(k, 16) if extra is None else extra)) if refine else k
    low = torch.bfloat16 if dtype == "bf16" else torch.float16

    if backend == "faiss":
        top_idx = _faiss_fp16_candidates(q, r, candidates, metric=metric, dtype=dtype, query_chunk=query_chunk)
        top_key = None
    else:
        top_key, top_idx = _torch_candidates(q, r, candidates, metric=metric, low=low, dev=dev,
                                             chunk=chunk or DEFAULT_CHUNK[dev.type], query_chunk=query_chunk)
    if refine or top_key is None:
        return _refine(q, r, top_idx, k, metric=metric, dev=dev, query_chunk=query_chunk)
    key, idx = _stable_best_first(top_key, top_idx, k)
    if metric == "l2":
        scores = (q.to(dev).pow(2).sum(dim=1, keepdim=True) - key).clamp_min(0)
    else:
        scores = key
    return scores.cpu().numpy().astype(np.float32), idx.cpu().numpy().astype(np.int64)


def _torch_candidates(q, r, candidates: int, *, metric: str, low, dev, chunk: int, query_chunk: int):
    """``[Q, candidates]`` keys (higher is closer; for l2 ``2<q,r> - |r|^2``) and reference indices."""
    import torch

    n_ref, d = r.shape
    stored = torch.empty((n_ref, d), dtype=low, device=dev)
    norms = torch.empty(n_ref, dtype=torch.float32, device=dev) if metric == "l2" else None
    for start in range(0, n_ref, chunk):
        block = r[start:start + chunk].to(dev, torch.float32)
        if metric == "cosine":
            block = _normalise(block)
        else:
            norms[start:start + chunk] = block.pow(2).sum(dim=1)
        stored[start:start + chunk] = block.to(low)
    keys, indices = [], []
    for q_start in range(0, q.shape[0], query_chunk):
        qb = q[q_start:q_start + query_chunk].to(dev, torch.float32)
        qb = (_normalise(qb) if metric == "cosine" else qb).to(low)
        best = None
        for start in range(0, n_ref, chunk):
            block_scores = qb @ stored[start:start + chunk].T
            if metric == "l2":  # ranking by |r|^2 - 2<q,r> (|q|^2 is the same for the whole row)
                block_scores = 2 * block_scores.float() - norms[start:start + chunk]
            top, where = block_scores.topk(min(candidates, block_scores.shape[1]), dim=1)
            best = _merge_topk(best, top.float(), where + start, candidates)
        keys.append(best[0])
        indices.append(best[1])
    return torch.cat(keys), torch.cat(indices)


def _faiss_fp16_candidates(q, r, candidates: int, *, metric: str, dtype: str, query_chunk: int):
    """Candidate indices from a faiss GPU flat index with float16 storage."""
    import faiss
    import torch

    if not hasattr(faiss, "GpuIndexFlatConfig") or faiss.get_num_gpus() == 0:
        raise ValueError("backend='faiss' needs the faiss GPU build and a GPU it sees (faiss.get_num_gpus() > 0); "
                         "use backend='torch'")
    if dtype != "fp16":
        raise ValueError(f"backend='faiss' stores float16 only; use dtype='fp16' (got {dtype!r}) or backend='torch'")
    if candidates > GPU_MAX_K:
        raise ValueError(f"backend='faiss' searches at most {GPU_MAX_K} candidates per query, asked for {candidates}; "
                         "lower k or extra, or use backend='torch'")
    config = faiss.GpuIndexFlatConfig()
    config.useFloat16 = True
    resources = faiss.StandardGpuResources()
    d = r.shape[1]
    index = (faiss.GpuIndexFlatIP if metric == "cosine" else faiss.GpuIndexFlatL2)(resources, d, config)
    for start in range(0, r.shape[0], 1 << 16):
        block = r[start:start + (1 << 16)].float()
        index.add(np.ascontiguousarray((_normalise(block) if metric == "cosine" else block).cpu().numpy()))
    found = []
    for start in range(0, q.shape[0], query_chunk):
        block = q[start:start + query_chunk].float()
        block = np.ascontiguousarray((_normalise(block) if metric == "cosine" else block).cpu().numpy())
        found.append(torch.from_numpy(index.search(block, candidates)[1].astype(np.int64)))
    return torch.cat(found)


def _refine(q, r, candidates, k: int, *, metric: str, dev, query_chunk: int):
    """Exact float32 scores of each query's candidates (gathered from the original references), best first."""
    import torch

    out_scores, out_indices = [], []
    for start in range(0, q.shape[0], query_chunk):
        idx = candidates[start:start + query_chunk].to(dev)
        qb = q[start:start + query_chunk].to(dev, torch.float32)
        rows = r[idx.clamp_min(0).to(r.device)].to(dev, torch.float32)  # [b, c, D]
        if metric == "cosine":
            scores = torch.einsum("bd,bcd->bc", _normalise(qb), _normalise(rows.flatten(0, 1)).view_as(rows))
            key = scores
        else:
            scores = (qb[:, None, :] - rows).pow(2).sum(dim=2)
            key = -scores
        key = key.masked_fill(idx < 0, float("-inf"))  # faiss pads missing results with -1
        key, order_idx = _stable_best_first(key, idx, k)
        out_scores.append((key if metric == "cosine" else -key).cpu())
        out_indices.append(order_idx.cpu())
    return torch.cat(out_scores).numpy().astype(np.float32), torch.cat(out_indices).numpy().astype(np.int64)
