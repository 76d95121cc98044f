"""Exact faiss search vs our reduced-precision search vs the naive torch search: time, agreement, memory.

Run: ``python tests/benchmarks/bench_search.py [--queries 1000 --references 200000 --dim 128]`` on a CPU,
``python tests/benchmarks/bench_search.py --gpu-scale`` on a GPU (10,000 queries x 1,000,000 x 512
references, k = 10: the issue's setting; faiss GPU fp32 takes about 280 ms on an H100).

Data: clustered embeddings (class centres + noise, L2-normalised), cosine metric. Baseline: the
search of a prebuilt faiss flat index (GPU index when faiss sees a GPU), best of ``--repeats``.
Ours: ``evaluations.knn_reduced`` from tensors already on the device, whole call (storing the
references at reduced precision included). Agreement: share of queries whose top-1 equals the
exact one, and recall@k. The naive search ``(q @ r.T).topk(k)`` materialises ``[Q, N]`` float32
scores; where it runs out of memory the error is caught and printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import faiss
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # run as a script from anywhere
from evaluations import knn, knn_reduced  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), out


def clustered(n_query: int, n_ref: int, dim: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm embeddings around n_ref / 20 class centres (noise comparable to the centres' spread)."""
    g = torch.Generator(device=device).manual_seed(seed)
    classes = max(2, n_ref // 20)
    centres = torch.randn(classes, dim, generator=g, device=device)
    def draw(n: int) -> torch.Tensor:
        labels = torch.randint(0, classes, (n,), generator=g, device=device)
        x = centres[labels] + 0.8 * torch.randn(n, dim, generator=g, device=device)
        return torch.nn.functional.normalize(x, dim=1)
    return draw(n_query), draw(n_ref)


def faiss_index(refs: np.ndarray):
    d = refs.shape[1]
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), d)
    else:
        index = faiss.IndexFlatIP(d)
    index.add(refs)
    return index


def agreement(found: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    top1 = float(np.mean(found[:, 0] == exact[:, 0]))
    recall = float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact)]))
    return top1, recall


def peak_gib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:7.2f}" if device.type == "cuda" else f"{'-':>7s}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-scale", action="store_true", help="10,000 queries x 1,000,000 x 512 references")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--references", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fp16", action="store_true", help="also time fp16 on the CPU (emulated there: slow)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.queries, args.references, args.dim, args.repeats = 50, 2000, 16, 1
    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    if args.gpu_scale:
        args.queries, args.references, args.dim = 10_000, 1_000_000, 512
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    q, r = clustered(args.queries, args.references, args.dim, device)
    q_np, r_np = q.cpu().numpy(), r.cpu().numpy()
    flops = 2.0 * args.queries * args.references * args.dim
    faiss_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"faiss {faiss.__version__} ({'GPU' if faiss_gpu else 'CPU'} index); {args.queries} queries x {args.references} x "
          f"{args.dim} references, k={args.k}, cosine, best of {args.repeats}")

    index = faiss_index(r_np)
    base_s, (_, exact) = best_time(lambda: index.search(q_np, args.k), args.repeats)
    exact = exact.astype(np.int64)
    print(f"\n{'method':44s} {'wall s':>8s} {'TFLOP/s':>8s} {'speed-up':>9s} {'top-1 agr':>10s} {'recall@k':>9s} {'peak GiB':>8s}")

    def row(name: str, seconds: float, found: np.ndarray | None, note: str = "") -> None:
        top1, recall = agreement(found, exact) if found is not None else (float("nan"), float("nan"))
        print(f"{name:44s} {seconds:8.3f} {flops / seconds / 1e12:8.2f} {base_s / seconds:8.2f}x {100 * top1:9.3f}% "
              f"{100 * recall:8.3f}% {peak_gib(device)} {note}", flush=True)

    row("faiss exact fp32 (prebuilt index, search)", base_s, exact)
    del index
    full_s, (_, full_i) = best_time(lambda: knn(q_np, r_np, args.k), args.repeats)
    row("evaluations.knn (index build + search)", full_s, full_i)

    variants = [("bf16", True), ("bf16", False)]
    if device.type == "cuda" or args.fp16:
        variants += [("fp16", True), ("fp16", False)]
    for dtype, refine in variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds, (_, found) = best_time(lambda: knn_reduced(q, r, args.k, dtype=dtype, refine=refine), args.repeats)
        row(f"knn_reduced {dtype}{' + fp32 re-scoring' if refine else ', no re-scoring'}", seconds, found)
    if faiss_gpu:
        torch.cuda.reset_peak_memory_stats()
        seconds, (_, found) = best_time(lambda: knn_reduced(q, r, args.k, dtype="fp16", backend="faiss"), args.repeats)
        row("knn_reduced faiss fp16 storage + re-scoring", seconds, found)

    need = 4 * args.queries * args.references
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        seconds, (_, found) = best_time(lambda: (q @ r.T).topk(args.k, dim=1), args.repeats)
        row("naive torch fp32 (q @ r.T).topk", seconds, found.cpu().numpy(), f"(scores alone: {need / 2**30:.1f} GiB)")
    except (torch.cuda.OutOfMemoryError, RuntimeError, MemoryError) as err:
        print(f"{'naive torch fp32 (q @ r.T).topk':44s} out of memory: {str(err).splitlines()[0][:90]} "
              f"(scores alone: {need / 2**30:.1f} GiB)")
    at_gpu_scale = 4 * 10_000 * 1_000_000
    print(f"\nnaive search at the issue's scale (10,000 x 1,000,000): {at_gpu_scale / 2**30:.1f} GiB of float32 scores "
          f"before top-k; knn_reduced: {2 * 1_000_000 * 512 / 2**30:.2f} GiB of bf16 references + "
          f"{2 * 4096 * (1 << 18) / 2**30:.1f} GiB score block.")


if __name__ == "__main__":
    main()
