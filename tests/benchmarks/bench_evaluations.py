"""Benchmark of `evaluations` against baselines measured in the same process.

1. retrieval vs pytorch-metric-learning's AccuracyCalculator (defaults) on the same
   N x D L2-normalised clustered embeddings: time ratio and the three shared numbers.
2. knn vs a chunked torch matmul + topk on Q queries x R references: time ratio,
   agreement of the neighbour lists, and the peak extra resident memory of each
   (sampled from /proc/self/statm every 5 ms, minus the RSS before the call;
   the inputs are allocated before).

    python tests/benchmarks/bench_evaluations.py                      # small, ~1 min
    python tests/benchmarks/bench_evaluations.py --knn-references 1000000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # run as a script from anywhere
import evaluations  # noqa: E402


class PeakRSS:
    """Peak extra resident set size while the block runs (includes faiss/BLAS C++ memory)."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.before = self._rss()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.extra_gib = (self.peak - self.before) / 2**30


def clustered(n: int, d: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    centres = rng.normal(size=(n_classes, d)).astype(np.float32)
    x = centres[labels] + 1.5 * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def bench_retrieval(n: int, d: int, n_classes: int, pml_k: str, repeats: int) -> None:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    logging.getLogger("PML").setLevel(logging.ERROR)
    x, y = clustered(n, d, n_classes, 0)
    # Warm both up (faiss/torch first-call costs) on a small slice.
    evaluations.retrieval(x[:500], y[:500], nmi=False)
    # AccuracyCalculator's default k=None searches all N - 1 neighbours and builds
    # several [N, N - 1] tensors (20k: > 10 GB); k="max_bin_count" gives the same
    # three numbers (only the first R neighbours count) within memory.
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k=None if pml_k == "None" else pml_k,
        device=torch.device("cpu"),
    )
    calc.get_accuracy(torch.from_numpy(x[:500]), torch.from_numpy(y[:500]))

    # Interleaved repeats, best of each: the machine is shared, so single timings are noisy.
    t_pml = t_ours = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(y))
        t_pml = min(t_pml, time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = evaluations.retrieval(x, y, metric="l2", nmi=False)
        t_ours = min(t_ours, time.perf_counter() - t0)
    print(f"retrieval {n} x {d}, {n_classes} classes (AccuracyCalculator k={pml_k}):")
    print(f"  best of {repeats}: AccuracyCalculator {t_pml:.2f} s   evaluations.retrieval {t_ours:.2f} s   speed-up {t_pml / t_ours:.1f}x")
    for ours_key, ref_key in (("precision_at_1", "precision_at_1"), ("r_precision", "r_precision"), ("map_at_r", "mean_average_precision_at_r")):
        print(f"  {ours_key:15s} ours {ours[ours_key]:.6f}  pml {ref[ref_key]:.6f}  |diff| {abs(ours[ours_key] - ref[ref_key]):.1e}")


def torch_knn(q: np.ndarray, r: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: cosine scores of a query chunk against all references, then topk."""
    rt = torch.nn.functional.normalize(torch.from_numpy(r), dim=1)
    qt = torch.nn.functional.normalize(torch.from_numpy(q), dim=1)
    scores, indices = [], []
    for start in range(0, qt.shape[0], chunk):
        s, i = torch.topk(qt[start : start + chunk] @ rt.T, k, dim=1)
        scores.append(s)
        indices.append(i)
    return torch.cat(scores).numpy(), torch.cat(indices).numpy()


def bench_knn(n_q: int, n_r: int, d: int, k: int, torch_chunk: int) -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=(n_q, d)).astype(np.float32)
    r = rng.normal(size=(n_r, d)).astype(np.float32)
    evaluations.knn(q[:100], r[:1000], k)  # warm-up

    with PeakRSS() as mem_ours:
        t0 = time.perf_counter()
        s_ours, i_ours = evaluations.knn(q, r, k)
        t_ours = time.perf_counter() - t0
    with PeakRSS() as mem_torch:
        t0 = time.perf_counter()
        s_torch, i_torch = torch_knn(q, r, k, torch_chunk)
        t_torch = time.perf_counter() - t0
    same_top1 = np.mean(i_ours[:, 0] == i_torch[:, 0])
    same_sets = np.mean([len(set(a) & set(b)) / k for a, b in zip(i_ours[:2000], i_torch[:2000])])
    print(f"knn {n_q} queries x {n_r} x {d} references, k={k}, cosine, {torch.get_num_threads()} threads:")
    print(f"  torch matmul+topk (chunks of {torch_chunk}) {t_torch:.2f} s, peak extra RSS {mem_torch.extra_gib:.2f} GiB")
    print(f"  evaluations.knn {t_ours:.2f} s, peak extra RSS {mem_ours.extra_gib:.2f} GiB   speed-up {t_torch / t_ours:.2f}x")
    print(f"  agreement: top-1 {same_top1:.4f}, top-{k} sets {same_sets:.4f}, max |score diff| {np.abs(s_ours - s_torch).max():.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrieval-n", type=int, default=20000)
    parser.add_argument("--retrieval-dim", type=int, default=128)
    parser.add_argument("--retrieval-classes", type=int, default=2000)
    parser.add_argument("--pml-k", choices=["max_bin_count", "None"], default="max_bin_count", help="AccuracyCalculator k (None, its default, needs O(N^2) memory)")
    parser.add_argument("--repeats", type=int, default=3, help="retrieval timings: best of this many")
    parser.add_argument("--knn-queries", type=int, default=10000)
    parser.add_argument("--knn-references", type=int, default=100000)
    parser.add_argument("--knn-dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--torch-chunk", type=int, default=256, help="queries per torch matmul (256 x 1M floats = 1 GiB)")
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--skip-knn", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    args = parser.parse_args()
    if args.smoke:  # retrieval warms up on its first 500 rows
        args.retrieval_n, args.retrieval_dim, args.retrieval_classes, args.repeats = 600, 16, 30, 1
        args.knn_queries, args.knn_references, args.knn_dim, args.torch_chunk = 200, 2000, 16, 64
    if not args.skip_retrieval:
        bench_retrieval(args.retrieval_n, args.retrieval_dim, args.retrieval_classes, args.pml_k, args.repeats)
    if not args.skip_knn:
        bench_knn(args.knn_queries, args.knn_references, args.knn_dim, args.k, args.torch_chunk)


if __name__ == "__main__":
    main()
