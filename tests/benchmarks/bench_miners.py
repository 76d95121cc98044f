"""Time each miner against pytorch-metric-learning's equivalent on the same batch, and the memory-bank search against torch.

Run: ``python tests/benchmarks/bench_miners.py [--batches 128 256 512 1024] [--bank 100000] [--threads N]``.
Prints best-of-N wall times and the ratio pml / ours (> 1: ours is faster). Batches are P x K
with K = 8 samples per class, D = 128 (the issue's setting: 1024 -> ~7.3 M semi-hard candidates).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import torch
from pytorch_metric_learning import miners as pml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # run as a script from anywhere
import miners  # noqa: E402

K_PER_CLASS = 8


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)  # best of N, as timeit: other processes on a shared machine only add time


def batch(size: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(size // K_PER_CLASS).repeat_interleave(K_PER_CLASS)
    return torch.randn(size, dim, generator=g), labels[torch.randperm(size, generator=g)]


def pairs(size: int) -> list[tuple[str, Callable, Callable]]:
    return [
        ("batch_hard", miners.BatchHardMiner(), pml.BatchHardMiner()),
        ("semihard(all)", miners.SemiHardMiner(margin=0.2), pml.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")),
        ("semihard(facenet) vs pml semihard", miners.SemiHardMiner(selection="facenet"),
         pml.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")),
        ("batch_all(nonzero)", miners.BatchAllMiner(margin=0.2, only_nonzero=True), pml.TripletMarginMiner(margin=0.2, type_of_triplets="all")),
        ("pair(margins)", miners.PairMiner(pos_margin=0.2, neg_margin=0.8), pml.PairMarginMiner(pos_margin=0.2, neg_margin=0.8)),
        ("distance_weighted", miners.DistanceWeightedMiner(), pml.DistanceWeightedMiner()),
    ]


def bench_batches(sizes: list[int], dim: int) -> None:
    print(f"{'miner':36s} {'B':>5s} {'ours ms':>9s} {'pml ms':>9s} {'pml/ours':>9s} {'ours T':>9s} {'pml T':>9s}")
    for size in sizes:
        emb, labels = batch(size, dim, seed=size)
        repeats = 3 if size >= 512 else 7
        for name, ours, ref in pairs(size):
            t_ours = best_time(lambda: ours(emb, labels), repeats)
            t_ref = best_time(lambda: ref(emb, labels), repeats)
            n_ours, n_ref = len(ours(emb, labels)[0]), len(ref(emb, labels)[0])
            print(f"{name:36s} {size:5d} {1e3 * t_ours:9.2f} {1e3 * t_ref:9.2f} {t_ref / t_ours:9.1f} {n_ours:9d} {n_ref:9d}")


def bench_bank(bank_size: int, dim: int, queries: int) -> None:
    g = torch.Generator().manual_seed(0)
    miner = miners.MemoryBankMiner(size=bank_size, embedding_dim=dim)
    step = 65536
    for start in range(0, bank_size, step):
        n = min(step, bank_size - start)
        x = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
        miner.enqueue(x, torch.randint(0, bank_size // K_PER_CLASS, (n,), generator=g))
    emb, labels = batch(queries, dim, seed=1)
    bank, bank_labels = miner.bank()
    q = torch.nn.functional.normalize(emb, dim=1)
    k = 1 + miner.extra_candidates

    def faiss_search() -> object:
        return miner._knn(q, k)

    def torch_search() -> object:
        sq = (q * q).sum(1, keepdim=True) + (bank * bank).sum(1) - 2 * q @ bank.t()
        return sq.topk(k, dim=1, largest=False)

    def torch_hardest_negative() -> object:  # what the miner computes, in plain torch
        sq = (q * q).sum(1, keepdim=True) + (bank * bank).sum(1) - 2 * q @ bank.t()
        return sq.masked_fill(labels[:, None] == bank_labels[None], float("inf")).min(dim=1)

    t_faiss = best_time(faiss_search, 3)
    t_torch = best_time(torch_search, 3)
    t_miner = best_time(lambda: miners.MemoryBankMiner.__call__(miner, emb, labels), 3)
    t_torch_full = best_time(torch_hardest_negative, 3)
    where = "GPU" if miner.on_gpu else "CPU"
    print(f"\nmemory bank {bank_size} x {dim}, {queries} queries, k={k}, faiss on {where}")
    print(f"  search: faiss {1e3 * t_faiss:.1f} ms, torch matmul+topk {1e3 * t_torch:.1f} ms, torch/faiss {t_torch / t_faiss:.2f}")
    print(f"  whole miner call {1e3 * t_miner:.1f} ms (includes enqueue, batch-hard positives, exact label filtering); "
          f"torch masked matmul+min {1e3 * t_torch_full:.1f} ms, ratio {t_torch_full / t_miner:.2f}")
    print(f"  torch holds the whole {queries} x {bank_size} distance matrix ({queries * bank_size * 4 / 2**20:.0f} MiB); "
          f"faiss tiles it and keeps {queries} x {k} results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.batches, args.dim, args.bank, args.queries = [32], 16, 2000, 64
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    bench_batches(args.batches, args.dim)
    bench_bank(args.bank, args.dim, args.queries)


if __name__ == "__main__":
    main()
