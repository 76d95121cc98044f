"""Memory-bank mining per training step, as a share of the step's time.

Run: ``python tests/benchmarks/bench_mining.py [--bank 100000] [--steps 10]`` on a CPU,
``python tests/benchmarks/bench_mining.py --gpu-scale`` on a GPU (1,000,000-entry bank of 512-d
embeddings, the 112 px / batch 256 backbone of ``bench_train.py --gpu-scale``).

Three figures, each the best of ``--repeats``: (1) one ``MemoryBankMiner`` call on a batch against
a full bank (random unit vectors, random labels), (2) a training step of our trainer with triplet +
in-batch batch-hard mining (the baseline), (3) a training step with triplet + the memory bank
(pre-filled, so every step searches the whole bank). The target: mining under 20% of the step.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # run as a script from anywhere
import miners  # noqa: E402
from bench_train import CPU, GPU, SMOKE, best_time, make_data, make_model, sync  # noqa: E402
from mlcompare import losses  # noqa: E402
from mlcompare.config.comparison import TrainConfig  # noqa: E402
from mlcompare.train.trainer import train  # noqa: E402


def filled_bank(size: int, dim: int, classes: int, seed: int = 0) -> miners.MemoryBankMiner:
    bank = miners.MemoryBankMiner(size=size, embedding_dim=dim)
    g = torch.Generator().manual_seed(seed)
    for start in range(0, size, 65536):
        n = min(65536, size - start)
        x = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
        bank.enqueue(x, torch.randint(0, classes, (n,), generator=g))
    return bank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-scale", action="store_true", help="1,000,000-entry bank, 512-d, batch 256 at 112 px")
    parser.add_argument("--bank", type=int, help="bank entries (default 100,000; 1,000,000 at --gpu-scale)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    args = parser.parse_args()
    if args.smoke:
        args.bank, args.steps, args.repeats = 2000, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    s = SMOKE if args.smoke else GPU if args.gpu_scale else CPU
    size = args.bank or (1_000_000 if args.gpu_scale else 100_000)
    batch = s["p"] * s["k"]
    data = make_data(s)
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}); "
          f"bank {size} x {s['dim']}, batch {batch} ({s['p']}x{s['k']}), {s['image_size']} px, best of {args.repeats}")

    bank = filled_bank(size, s["dim"], s["classes"])
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(batch, s["dim"], generator=g).to(device)
    labels = torch.arange(s["p"]).repeat_interleave(s["k"]).to(device)
    mine_s = best_time(lambda: (bank(emb, labels), sync(device)), args.repeats)
    print(f"miner call ({'faiss GPU' if bank.on_gpu else 'faiss CPU'} search): {1000 * mine_s:.1f} ms")

    cfg = TrainConfig(steps=args.steps, p=s["p"], k=s["k"], warmup_steps=1, log_every=10**9, checkpoint_every=10**9,
                      grad_clip=0.0, flip=False)

    def step_time(miner_factory) -> float:
        def run() -> None:
            loss = losses.get("triplet", num_classes=s["classes"], embedding_dim=s["dim"], miner=miner_factory())
            train(make_model(s), loss, data, cfg, seed=0, device=device)
            sync(device)
        return best_time(run, args.repeats) / args.steps

    step_bh = step_time(lambda: miners.get("batch_hard"))
    step_bank = step_time(lambda: bank)
    print(f"training step, batch-hard in batch: {1000 * step_bh:.1f} ms")
    print(f"training step, memory bank        : {1000 * step_bank:.1f} ms ({1000 * (step_bank - step_bh):+.1f} ms)")
    print(f"mining share of the memory-bank step: {100 * mine_s / step_bank:.1f}% (miner call / step; target < 20%), "
          f"{100 * (step_bank - step_bh) / step_bank:.1f}% (extra step time / step)")
    # CUDA embeddings move the bank to their GPU on the first call: searched in place from then on.
    print(f"bank memory: {size * s['dim'] * 4 / 2**20:.0f} MiB float32 on {bank.device}")


if __name__ == "__main__":
    main()
