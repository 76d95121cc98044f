"""Hard-negative mining over a memory bank of past embeddings, searched with FAISS.

A cross-batch memory in the spirit of Wang et al. 2020 ("Cross-Batch Memory for Embedding
Learning"): in-batch miners see ``B`` candidates per anchor, this one sees the last ``size``.
"""
from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from miners._validation import check_embeddings_and_labels, check_non_negative
from miners.distances import distance_matrix, same_label_masks

_RULES = ("hardest", "semihard")
# faiss' GPU k-selection handles k <= 2048 (GPU_MAX_SELECTION_K); the CPU has no such limit.
_GPU_MAX_K = 2048


def gpu_knn_function():
    """faiss' numpy ``knn_gpu`` (with memory limits), also after ``faiss.contrib.torch_utils`` replaced it.

    torch_utils swaps ``faiss.knn_gpu`` for a torch version without the memory-limit arguments
    and keeps the numpy one as ``faiss.knn_gpu_numpy``.
    """
    return getattr(faiss, "knn_gpu_numpy", faiss.knn_gpu)


class MemoryBankMiner:
    """Batch-hard positives from the batch, hardest (or semi-hard) negatives from a bank of past embeddings.

    Each call (1) writes the batch's detached embeddings and labels into a ring buffer of the
    last ``size`` samples (so the bank always includes the current batch), then (2) for every
    anchor with an in-batch positive takes its hardest positive ``p`` (farthest same-label sample
    in the batch) and searches the whole bank exactly for its ``negatives_per_anchor`` nearest
    entries with a different label (``rule="hardest"``) or, among those farther than
    ``d(a, p)``, the nearest (``rule="semihard"``, FaceNet's selection). Distances are Euclidean
    on L2-normalised embeddings (``normalize=True``) or raw ones.

    Returns ``(anchor, positive, negative_embeddings)``: ``anchor``, ``positive`` int64 ``[T]``
    indexing the batch, ``negative_embeddings`` float ``[T, D]`` rows of the bank (no gradient),
    on the input's device, ``T = negatives_per_anchor x`` (anchors with enough negatives; an
    anchor with fewer gets those it has). ``mlcompare``'s triplet losses take this form;
    ``last_negative_slots`` holds the bank slots of the last call's negatives.

    Search: exact brute force (``faiss.knn``, the search behind ``IndexFlatL2``), over query
    chunks of ``query_chunk`` rows; on a GPU that faiss sees (``faiss.get_num_gpus() > 0``) and
    ``use_gpu``, faiss' GPU brute force (``bfKnn``). When the embeddings are CUDA tensors the bank
    (float32) lives on their GPU and is searched there in place, through
    ``faiss.contrib.torch_utils`` on torch's current stream: no host copy of the bank, only the
    ``[Q, k]`` candidates come back to the host. With CPU embeddings the bank lives in host memory
    and a GPU search copies it to the device once per call (``faiss.knn_gpu`` with memory limits of
    ``gpu_memory_limit`` bytes each for the bank tiles and the queries). The candidate count ``k``
    starts at ``negatives_per_anchor + extra_candidates`` and doubles for the anchors still short of valid (different-label, and
    for ``"semihard"`` farther than the positive) candidates until the bank is exhausted, so the
    result is exact; on a GPU ``k`` stops at faiss' limit of 2048, so an anchor whose 2048
    nearest entries are all invalid gets fewer negatives there.

    Args:
        size: bank capacity (number of past samples kept), > 0.
        embedding_dim: ``D``.
        rule: ``"hardest"`` or ``"semihard"``.
        negatives_per_anchor: negatives returned per anchor, > 0.
        normalize: L2-normalise before storing and searching.
        extra_candidates: initial over-fetch to skip same-label neighbours, >= 0.
        query_chunk: queries per search call (bounds result memory), > 0.
        use_gpu: use faiss' GPU search when faiss sees a GPU.
        gpu_memory_limit: bytes for ``vectorsMemoryLimit`` and ``queriesMemoryLimit`` (0: faiss decides).
    """

    keeps_embeddings = True  # stores embeddings: the registry layer passes the method's embedding_dim
    shown_params = ('size', 'rule')

    def __init__(
        self,
        *,
        size: int = 65536,
        embedding_dim: int = 128,
        rule: str = "hardest",
        negatives_per_anchor: int = 1,
        normalize: bool = True,
        extra_candidates: int = 32,
        query_chunk: int = 4096,
        use_gpu: bool = True,
        gpu_memory_limit: int = 1 << 30,
    ) -> None:
        for name, value in (("size", size), ("embedding_dim", embedding_dim),
                            ("negatives_per_anchor", negatives_per_anchor), ("query_chunk", query_chunk)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if rule not in _RULES:
            raise ValueError(f"rule must be one of {', '.join(_RULES)}, got {rule!r}")
        check_non_negative("extra_candidates", extra_candidates)
        check_non_negative("gpu_memory_limit", gpu_memory_limit)
        self.size = size
        self.embedding_dim = embedding_dim
        self.rule = rule
        self.negatives_per_anchor = negatives_per_anchor
        self.normalize = bool(normalize)
        self.extra_candidates = int(extra_candidates)
        self.query_chunk = query_chunk
        self.use_gpu = bool(use_gpu)
        self.gpu_memory_limit = int(gpu_memory_limit)
        self._bank = torch.zeros((size, embedding_dim), dtype=torch.float32)  # moves to the embeddings' GPU
        self._labels = np.zeros(size, dtype=np.int64)
        self._filled = 0
        self._next = 0
        self._gpu_resources = None
        self.last_negative_slots = torch.empty(0, dtype=torch.int64)

    def __repr__(self) -> str:
        return (f"MemoryBankMiner(size={self.size}, embedding_dim={self.embedding_dim}, rule={self.rule!r}, "
                f"negatives_per_anchor={self.negatives_per_anchor}, normalize={self.normalize})")

    @property
    def on_gpu(self) -> bool:
        return self.use_gpu and faiss.get_num_gpus() > 0

    def __len__(self) -> int:
        return self._filled

    @property
    def device(self) -> torch.device:
        """Where the bank lives: the CPU, or the GPU of the embeddings when it is searched there."""
        return self._bank.device

    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled part of the bank, ``([N, D] float32 on :attr:`device`, [N] int64 CPU)`` in slot
        order (views, not copies)."""
        return self._bank[: self._filled], torch.from_numpy(self._labels[: self._filled])

    def state_dict(self) -> dict[str, Any]:
        """The bank's contents and write position (tensors and ints: ``torch.load(weights_only=True)``)."""
        return {"bank": self._bank[: self._filled].cpu().clone(), "labels": torch.from_numpy(self._labels[: self._filled].copy()),
                "filled": self._filled, "next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        filled = int(state["filled"])
        if filled > self.size or state["bank"].shape[1:] != self._bank.shape[1:]:
            raise ValueError(f"memory bank state of {filled} x {tuple(state['bank'].shape[1:])} does not fit a bank "
                             f"of {self.size} x {self.embedding_dim}")
        self._bank.zero_()
        self._bank[:filled] = state["bank"].to(self._bank.device, torch.float32)
        self._labels[:] = 0
        self._labels[:filled] = state["labels"].cpu().numpy()
        self._filled, self._next = filled, int(state["next"])

    def reset(self) -> None:
        self._filled = 0
        self._next = 0

    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Write ``[B, D]`` embeddings (stored as given: normalise first if needed) into the ring buffer."""
        if embeddings.is_cuda and self.on_gpu and not self._bank.is_cuda:
            self._bank = self._bank.to(embeddings.device)  # searched in place on that GPU from now on
        x = embeddings.detach().to(self._bank.device, torch.float32)
        y = labels.detach().to("cpu", torch.int64).numpy()
        if len(x) > self.size:  # only the last `size` rows survive anyway
            x, y = x[-self.size:], y[-self.size:]
        slots = (self._next + np.arange(len(x))) % self.size
        self._bank[torch.from_numpy(slots).to(self._bank.device)] = x
        self._labels[slots] = y
        self._next = int((self._next + len(x)) % self.size)
        self._filled = min(self._filled + len(x), self.size)

    def _knn(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``k`` nearest bank entries (squared L2, ascending), chunked over queries (float32
        on the bank's device)."""
        base = self._bank[: self._filled]
        dists, slots = [], []
        for chunk in queries.split(self.query_chunk):
            if base.is_cuda:
                from faiss.contrib import torch_utils  # tensors in place, on torch's stream

                d, i = torch_utils.torch_replacement_knn_gpu(self._resources(), chunk.contiguous(), base, k,
                                                             device=base.device.index)
                d, i = d.cpu().numpy(), i.cpu().numpy()
            elif self.on_gpu:
                d, i = gpu_knn_function()(self._resources(), np.ascontiguousarray(chunk.numpy()), base.numpy(), k,
                                          vectorsMemoryLimit=self.gpu_memory_limit, queriesMemoryLimit=self.gpu_memory_limit)
            else:
                d, i = faiss.knn(np.ascontiguousarray(chunk.numpy()), base.numpy(), k)
            dists.append(d)
            slots.append(i)
        return np.concatenate(dists), np.concatenate(slots)

    def _resources(self):
        if self._gpu_resources is None:
            self._gpu_resources = faiss.StandardGpuResources()
        return self._gpu_resources

    def _search(self, queries: torch.Tensor, query_labels: np.ndarray, min_sq_dist: np.ndarray) -> np.ndarray:
        """``[Q, n]`` bank slots (-1 where missing): per query, nearest different-label entries with ``d^2 > min_sq_dist``."""
        want = self.negatives_per_anchor
        result = np.full((len(queries), want), -1, dtype=np.int64)
        todo = np.arange(len(queries))
        k = want + self.extra_candidates
        k_max = min(self._filled, _GPU_MAX_K) if self.on_gpu else self._filled
        while len(todo) and self._filled:
            k = min(k, k_max)
            d, slots = self._knn(queries[torch.from_numpy(todo).to(queries.device)], k)
            valid = (slots >= 0) & (self._labels[np.maximum(slots, 0)] != query_labels[todo, None])
            valid &= d > min_sq_dist[todo, None]
            # the first `want` valid candidates per row, in ascending distance
            order = np.argsort(~valid, axis=1, kind="stable")[:, :want]
            picked = np.take_along_axis(slots, order, axis=1)
            picked_ok = np.take_along_axis(valid, order, axis=1)
            result[todo] = np.where(picked_ok, picked, -1)
            complete = picked_ok.all(axis=1)
            if k >= k_max:
                break
            todo = todo[~complete]
            k *= 2
        return result

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_embeddings_and_labels(embeddings, labels)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"embeddings have dimension {embeddings.shape[1]} but the bank holds embedding_dim={self.embedding_dim}")
        with torch.no_grad():
            x = F.normalize(embeddings.detach(), dim=1) if self.normalize else embeddings.detach()
            self.enqueue(x, labels)
            pos_mask, _ = same_label_masks(labels)
            dist = distance_matrix(x, normalize=False)
            hardest_pos_dist, hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).max(dim=1)
            anchors = torch.nonzero(pos_mask.any(dim=1)).flatten()
            device = embeddings.device
            if anchors.numel() == 0:
                self.last_negative_slots = torch.empty(0, dtype=torch.int64)
                empty = torch.empty(0, dtype=torch.int64, device=device)
                return empty, empty.clone(), embeddings.new_empty((0, self.embedding_dim))
            queries = x[anchors].to(self._bank.device, torch.float32)
            query_labels = labels[anchors].cpu().numpy().astype(np.int64)
            if self.rule == "semihard":
                min_sq = (hardest_pos_dist[anchors] ** 2).cpu().numpy()
            else:
                min_sq = np.full(len(queries), -np.inf, dtype=np.float32)
            slots = self._search(queries, query_labels, min_sq)
            rows, cols = np.nonzero(slots >= 0)
            chosen = torch.from_numpy(slots[rows, cols])
            rows_t = torch.from_numpy(rows).to(device)
            anchor = anchors[rows_t]
            self.last_negative_slots = chosen
            negatives = self._bank[chosen.to(self._bank.device)].to(device=device, dtype=embeddings.dtype)
            return anchor, hardest_pos[anchor], negatives
