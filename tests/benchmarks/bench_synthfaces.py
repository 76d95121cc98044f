"""Time synthfaces rendering: 20,000 images of 64x64 (target: under 20 s on 2 CPU cores).

Baseline, measured in the same process: one pass of ``torch.lerp`` over a float tensor as large as
the output (``[N, 3, 64, 64]``), the unit cost of compositing one layer; the ratio says how many
such passes rendering costs, which is comparable across machines.

    python tests/benchmarks/bench_synthfaces.py [--images 20000] [--size 64] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch

from mlcompare.data import synthfaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.size = 40, 32
    per_identity = 20
    identities = max(2, args.images // per_identity)

    synthfaces.load(size=args.size, identities=4, images_per_identity=2, device=args.device)  # warm-up
    start = time.perf_counter()
    data = synthfaces.load(size=args.size, identities=identities, images_per_identity=per_identity, device=args.device)
    seconds = time.perf_counter() - start

    chunk = 512
    a = torch.rand(chunk, 3, args.size, args.size)
    b = torch.rand(chunk, 3, args.size, args.size)
    w = torch.rand(chunk, 1, args.size, args.size).expand_as(a)
    start = time.perf_counter()
    for _ in range(-(-len(data) // chunk)):
        a.lerp_(b, w)
    baseline = time.perf_counter() - start

    print(f"synthfaces: {len(data)} images of {args.size}x{args.size} on {args.device} in {seconds:.2f} s "
          f"({len(data) / seconds:.0f} images/s; target < 20 s for 20,000 at 64 px on 2 cores)")
    print(f"baseline (one lerp pass over the output): {baseline:.3f} s; rendering = {seconds / baseline:.0f} x baseline")
    print(f"torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
