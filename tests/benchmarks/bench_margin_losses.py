"""Forward + backward time of the margin losses against pytorch-metric-learning, same process.

Run: ``python tests/benchmarks/bench_margin_losses.py [--batch 256 --dim 128 --classes 2000]``.
Prints the median time per step of each loss and its ratio to pml's loss of the same formula
(< 1: ours is faster). CPU or the first CUDA device, whichever torch sees.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from pytorch_metric_learning import losses as pml

import mlcompare.losses as L


def _time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for i in range(repeats + 5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 5:  # warm-up
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.dim, args.classes, args.repeats = 16, 16, 50, 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.dim, device=device, requires_grad=True)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    pairs = [
        ("cosface", dict(s=64.0, m=0.35), lambda: pml.CosFaceLoss(num_classes=args.classes, embedding_size=args.dim, margin=0.35, scale=64)),
        ("arcface", dict(s=64.0, m=0.5), lambda: pml.ArcFaceLoss(num_classes=args.classes, embedding_size=args.dim, margin=math.degrees(0.5), scale=64)),
        ("sphereface", dict(m=4, lambda_base=0.0), lambda: pml.SphereFaceLoss(num_classes=args.classes, embedding_size=args.dim, margin=4, scale=1)),
        ("subcenter_arcface", dict(s=64.0, m=0.5, K=3), lambda: pml.SubCenterArcFaceLoss(num_classes=args.classes, embedding_size=args.dim, margin=math.degrees(0.5), scale=64, sub_centers=3)),
    ]
    print(f"device={device} batch={args.batch} dim={args.dim} classes={args.classes}")
    for name, params, make_ref in pairs:
        ours = L.get(name, num_classes=args.classes, embedding_dim=args.dim, **params).to(device)
        ref = make_ref().to(device)
        ref.W.data = ours.weight.detach().t().contiguous().clone()

        def step(loss):
            x.grad = None
            loss(x, y).backward()

        t_ours = _time(lambda: step(ours), args.repeats, device)
        t_ref = _time(lambda: step(ref), args.repeats, device)
        print(f"{name:18s} ours {t_ours * 1e3:7.2f} ms   pml {t_ref * 1e3:7.2f} ms   ratio {t_ours / t_ref:5.2f}")


if __name__ == "__main__":
    main()
