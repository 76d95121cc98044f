"""Our trainer against the loop a user would write with pytorch-metric-learning: images/s.

Run: ``python tests/benchmarks/bench_train.py [--steps 20] [--repeats 3] [--threads N]`` on a CPU, or
``python tests/benchmarks/bench_train.py --gpu-scale`` on a GPU (112 px, batch 256, 512-d, ResNet
widths 64-512, 2,000 classes).

Both sides train the same ``ResNetFace`` (same seed, same initial weights) on the same P x K
batches (our ``PKSampler``'s indices) with AdamW, for the same number of steps, and the same loss:
triplet with batch-hard mining (ours: ``triplet`` + ``batch_hard``; pml: ``TripletMarginLoss`` +
``BatchHardMiner``) and ArcFace (ours: ``arcface`` m = 0.5 rad, s = 64; pml: ``ArcFaceLoss``
margin 28.6 deg, scale 64). Our trainer runs with flips and gradient clipping off, so that both do
the same work; it always uses channels_last, so the plain loop is timed as a user writes it
(contiguous NCHW) and with channels_last (the like-for-like baseline for our overhead).
On a GPU one more row trains from images already in GPU memory, as ``mlcompare run`` holds
synthfaces. Each figure is the best of ``--repeats`` timed runs after one warm-up run, wall-clock around the
whole run (on a GPU, synchronised at the end). Ratios are against the plain fp32 loop.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # run as a script from anywhere
import miners  # noqa: E402
from mlcompare import losses  # noqa: E402
from mlcompare.backbones import ResNetFace, to_input  # noqa: E402
from mlcompare.config.comparison import TrainConfig  # noqa: E402
from mlcompare.data.facedata import FaceData  # noqa: E402
from mlcompare.data.sampler import PKSampler  # noqa: E402
from mlcompare.train.trainer import train  # noqa: E402

CPU = dict(image_size=32, widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1), dim=128, p=16, k=4, classes=200, images_per_class=8)
GPU = dict(image_size=112, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), dim=512, p=64, k=4, classes=2000, images_per_class=8)
SMOKE = dict(image_size=16, widths=(8, 16), blocks=(1, 1), dim=16, p=4, k=2, classes=8, images_per_class=4)  # --smoke


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_data(s: dict, seed: int = 0) -> FaceData:
    g = torch.Generator().manual_seed(seed)
    n = s["classes"] * s["images_per_class"]
    images = torch.randint(0, 256, (n, 3, s["image_size"], s["image_size"]), dtype=torch.uint8, generator=g)
    labels = torch.arange(s["classes"]).repeat_interleave(s["images_per_class"])
    return FaceData(images, labels, [str(i) for i in range(s["classes"])], "bench")


def make_model(s: dict) -> ResNetFace:
    torch.manual_seed(0)
    return ResNetFace(image_size=s["image_size"], widths=s["widths"], blocks=s["blocks"], embedding_dim=s["dim"])


def plain_loop(s: dict, data: FaceData, loss_name: str, steps: int, device: torch.device,
               channels_last: bool) -> Callable[[], None]:
    """The pytorch-metric-learning loop as its README shows it (+ optionally channels_last)."""
    sampler = PKSampler(data.labels, p=s["p"], k=s["k"], seed=0)

    def run() -> None:
        model = make_model(s).to(device)
        if loss_name == "arcface":
            loss_fn = pml_losses.ArcFaceLoss(num_classes=s["classes"], embedding_size=s["dim"], margin=28.6, scale=64).to(device)
            miner = None
        else:
            loss_fn, miner = pml_losses.TripletMarginLoss(margin=0.2), pml_miners.BatchHardMiner()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-3, weight_decay=5e-4)
        model.train()
        for step in range(steps):
            index = sampler.batch(step)
            x = to_input(data.images[index].to(device, non_blocking=True))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = data.labels[index].to(device, non_blocking=True)
            emb = model(x)
            value = loss_fn(emb, y, miner(emb, y)) if miner is not None else loss_fn(emb, y)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        sync(device)

    return run


def our_trainer(s: dict, data: FaceData, loss_name: str, steps: int, device: torch.device, precision: str,
                compile: bool) -> Callable[[], None]:
    cfg = TrainConfig(steps=steps, p=s["p"], k=s["k"], lr=1e-3, warmup_steps=max(1, steps // 10), grad_clip=0.0,
                      flip=False, log_every=10, checkpoint_every=10**9, precision=precision, compile=compile)

    def run() -> None:
        model = make_model(s)
        params = {"miner": miners.get("batch_hard")} if loss_name == "triplet" else {}
        loss = losses.get(loss_name, num_classes=s["classes"], embedding_dim=s["dim"], **params)
        train(model, loss, data, cfg, seed=0, device=device)
        sync(device)

    return run


def best_time(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up (kernel selection, allocator, compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-scale", action="store_true", help="the H100 sizes (112 px, batch 256, 512-d, widths 64-512)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--steps", type=int, help="steps per timed run (default 20 on CPU, 50 at --gpu-scale)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--losses", nargs="+", default=["triplet", "arcface"], choices=["triplet", "arcface"])
    parser.add_argument("--compile", action="store_true", help="also time our trainer with torch.compile")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.repeats = 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    s = SMOKE if args.smoke else GPU if args.gpu_scale else CPU
    steps = args.steps or (50 if args.gpu_scale else 20)
    data = make_data(s)
    batch = s["p"] * s["k"]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}; {s['image_size']} px, batch {batch} ({s['p']}x{s['k']}), widths {s['widths']}, "
          f"blocks {s['blocks']}, dim {s['dim']}, {steps} steps, best of {args.repeats}")
    precisions = ["fp32", "bf16"] if device.type == "cpu" else ["fp32", "bf16", "fp16"]
    for loss_name in args.losses:
        runs: list[tuple[str, Callable[[], None]]] = [
            ("plain pml loop, fp32", plain_loop(s, data, loss_name, steps, device, channels_last=False)),
            ("plain pml loop, fp32 + channels_last", plain_loop(s, data, loss_name, steps, device, channels_last=True)),
        ]
        runs += [(f"mlcompare trainer, {p}", our_trainer(s, data, loss_name, steps, device, p, False)) for p in precisions]
        if device.type == "cuda":  # as `mlcompare run` holds synthfaces: rendered on the GPU, no copy per step
            runs.append(("mlcompare trainer, bf16, images on the GPU",
                         our_trainer(s, data.to(device), loss_name, steps, device, "bf16", False)))
        if args.compile:
            runs.append(("mlcompare trainer, bf16 + compile", our_trainer(s, data, loss_name, steps, device, "bf16", True)))
        print(f"\n{loss_name}: {'method':40s} {'wall s':>8s} {'img/s':>9s} {'vs plain':>9s} {'vs plain+CL':>11s}")
        seconds = {}
        for name, fn in runs:
            seconds[name] = best_time(fn, args.repeats)
            base, base_cl = seconds[runs[0][0]], seconds.get(runs[1][0])
            ratio_cl = f"{base_cl / seconds[name]:10.3f}x" if base_cl else f"{'':11s}"
            print(f"{'':{len(loss_name) + 2}s}{name:40s} {seconds[name]:8.3f} {steps * batch / seconds[name]:9.0f} "
                  f"{base / seconds[name]:8.3f}x {ratio_cl}", flush=True)
        ours = seconds["mlcompare trainer, fp32"]
        overhead = ours / seconds[runs[1][0]] - 1
        print(f"{'':{len(loss_name) + 2}s}our fp32 overhead over the plain channels_last loop: {100 * overhead:+.1f}% (target <= +5%)")


if __name__ == "__main__":
    main()
