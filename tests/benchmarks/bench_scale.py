"""Scaling out on CPU: images/s for 1 and 2 processes, and the memory of Partial FC vs a full classifier.

Run: ``python tests/benchmarks/bench_scale.py`` (about 3 minutes on 2 cores), options ``--steps 30
--repeats 3 --classes 100000 --dim 512 --batch 128 --part a|b|both``; ``--quick`` is a check at
small sizes (well under a minute), ``--smoke`` the tiniest run of every part, one method and world
sizes 1 and 2 (what tests/test_benchmarks_smoke.py runs; its figures mean nothing).

Part A, throughput. Our trainer (``mlcompare.train.trainer.train``, fp32, flips and clipping off) trains
quick.toml's backbone (``ResNetFace``, widths 16-32-64, 128-d, 32 px synthfaces) on the same global
P x K batch in 1 process and in 2 (gloo; each process gets the RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_* variables torchrun sets and joins through ``distributed.from_env``). On the same cores: the
one process runs ``--threads`` torch threads (default: every core), each of the two half as many; a
reference row runs one process on half the threads. Where ``TrainConfig`` has ``sync_batchnorm``,
2 processes run with it on and off. Losses are built by ``runner.build_loss`` from quick.toml's
methods: ``arcface`` (s 64, m 0.5 rad; replicated on each rank, its gradient all-reduced) and
``triplet-batch-hard`` (mined over the embeddings gathered from both ranks). Each process is fresh,
runs an untimed ``--warmup-steps`` run, then ``--steps`` timed steps (the trainer's own loop time,
the slowest rank); each figure is the best of ``--repeats`` such processes, the setups taken in
turn. Ratios are images/s against 1 process on every core.

Part B, memory per rank at ``--classes`` classes of ``--dim``-d float32 embeddings, ``--batch``
the global batch, for W in ``--world-sizes``: a full ArcFace classifier (replicated on every rank,
as the trainer does; each rank sees batch / W rows) against ``partial_fc`` (margin arcface,
``--sample-rate``, the shard ``shard_range(classes, 0, W)``; the batch is gathered from every rank).
Computed from the shapes: parameter, gradient and optimiser-state bytes (AdamW: two moments; SGD
momentum: one buffer) and one step's logits (full ``[batch / W, classes]``, partial ``[batch,
sampled classes of the shard]``). Measured: one forward + backward + optimiser step (the trainer's
``make_optimizer``) of the loss alone on random embeddings that require grad, in a fresh process
per configuration (W gloo processes for partial_fc, whose forward needs the process group; one
for the full classifier, which needs none), after an untimed tiny step of the same loss warmed up
kernels and gloo: ``getrusage(RUSAGE_SELF).ru_maxrss`` after the backward pass and after the
optimiser step, minus the resident set (``/proc/self/statm``) just before the loss was built,
the maximum over ranks; "held" is the resident set after the step minus the same baseline
(parameters, gradients, optimiser state). glibc's mmap threshold is pinned at 128 KiB so that
freed tensors leave the resident set (``--adaptive-malloc``: glibc's default, which keeps freed
blocks up to 32 MiB resident and moved these peaks by up to ~150 MB). Ratios: partial_fc / full at
the same W.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import os
import resource
import socket
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # run as a script from anywhere
from mlcompare import losses  # noqa: E402
from mlcompare import data as datasets  # noqa: E402
from mlcompare.backbones import ResNetFace  # noqa: E402
from mlcompare.config.comparison import MethodConfig, TrainConfig  # noqa: E402
from mlcompare.losses.partial_fc import shard_range  # noqa: E402
from mlcompare.run.runner import build_loss  # noqa: E402
from mlcompare.train.distributed import from_env  # noqa: E402
from mlcompare.train.trainer import make_optimizer, train  # noqa: E402

# quick.toml's backbone and methods (partial_fc, not in quick.toml, with half of each shard sampled)
BACKBONE = dict(image_size=32, widths=(16, 32, 64), blocks=(1, 1, 1), embedding_dim=128)
METHODS = {
    "arcface": MethodConfig(name="arcface", loss="arcface", params={"s": 64.0, "m": 0.5}),
    "softmax": MethodConfig(name="softmax", loss="softmax"),
    "triplet-batch-hard": MethodConfig(name="triplet-batch-hard", loss="triplet", miner="batch_hard",
                                       params={"margin": 0.2}),
    "partial_fc": MethodConfig(name="partial_fc", loss="partial_fc", params={"margin": "arcface", "sample_rate": 0.5}),
}
MB = 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_env(rank: int, world: int, port: int) -> None:
    """What torchrun sets for each process."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def spawn(fn, world: int, *args) -> list[dict]:
    """Run ``fn(rank, world, port, out_dir, *args)`` in ``world`` fresh processes; each rank's JSON result.

    Forked from a forkserver that imported torch and this module once (``main`` preloads them), so a
    process starts in a fraction of a second, not the ~2 s of importing torch, and inherits no threads.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(fn, args=(world, free_port(), tmp) + args, nprocs=world, join=True, start_method="forkserver")
        results = []
        for rank in range(world):
            with open(os.path.join(tmp, f"rank{rank}.json")) as f:
                results.append(json.load(f))
        return results


def write(out_dir: str, rank: int, result: dict) -> None:
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


# ---- Part A: throughput ---------------------------------------------------------------------------

def _train_worker(rank: int, world: int, port: int, out_dir: str, data, method: str, cfg: TrainConfig,
                  warmup: TrainConfig, threads: int) -> None:
    set_env(rank, world, port)
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    ctx = from_env(device)  # joins the gloo group when WORLD_SIZE > 1
    try:
        for run_cfg in (warmup, cfg):  # the first run, untimed, warms up kernels, allocator and gloo
            torch.manual_seed(0)
            model = ResNetFace(**BACKBONE)
            loss = build_loss(METHODS[method], num_classes=data.num_identities,
                              embedding_dim=BACKBONE["embedding_dim"], ctx=ctx)
            result = train(model, loss, data, run_cfg, seed=0, device=device, ctx=ctx)
        write(out_dir, rank, {"seconds": result.seconds})
    finally:
        if ctx.active:
            dist.destroy_process_group()


def threads(n: int) -> str:
    return f"{n} thread" + ("s" if n > 1 else "")


def throughput(args, data) -> None:
    cfg = TrainConfig(steps=args.steps, p=args.p, k=args.k, lr=2e-3, warmup_steps=max(1, args.steps // 10),
                      grad_clip=0.0, flip=False, log_every=10**9, checkpoint_every=10**9)
    warmup = dataclasses.replace(cfg, steps=args.warmup_steps, warmup_steps=1)
    batch, half = args.p * args.k, max(1, args.threads // 2)
    # 2 processes run once per BatchNorm mode where the trainer has the option (it costs collectives)
    has_sync = any(f.name == "sync_batchnorm" for f in dataclasses.fields(TrainConfig))
    modes = [(", sync BN", {"sync_batchnorm": True}), (", per-rank BN", {"sync_batchnorm": False})] if has_sync else [("", {})]
    print(f"\nPart A, throughput: {args.steps} steps, global batch {batch} ({args.p}x{args.k}), 32 px, "
          f"widths {BACKBONE['widths']}, {BACKBONE['embedding_dim']}-d, {data.num_identities} identities, "
          f"best of {args.repeats} after a {args.warmup_steps}-step warm-up; the same {args.threads} cores: 1 process x "
          f"{args.threads} torch threads against 2 processes (gloo) x {half}; TrainConfig.sync_batchnorm "
          f"{'exists, default ' + str(TrainConfig().sync_batchnorm) if has_sync else 'absent'}")
    print(f"  {'method':20s} {'setup':37s} {'s/step':>8s} {'img/s':>8s} {'vs 1 proc':>10s}")
    for method in args.methods:
        runs = [(f"1 process x {threads(args.threads)}", 1, args.threads, {})]
        if half != args.threads:
            runs.append((f"1 process x {threads(half)} (ref.)", 1, half, {}))
        runs += [(f"2 processes x {threads(half)}{name}", 2, half, kw) for name, kw in modes]
        best = {label: float("inf") for label, *_ in runs}
        for _ in range(args.repeats):  # round-robin, so that a burst of load elsewhere hits every setup alike
            for label, world, n, kw in runs:
                ranks = spawn(_train_worker, world, data, method, dataclasses.replace(cfg, **kw),
                              dataclasses.replace(warmup, **kw), n)
                best[label] = min(best[label], max(r["seconds"] for r in ranks))  # the slowest rank
        base = None
        for label, *_ in runs:
            seconds = best[label]
            rate = args.steps * batch / seconds
            base = base or rate
            print(f"  {method:20s} {label:37s} {seconds / args.steps:8.3f} {rate:8.0f} {rate / base:9.2f}x", flush=True)


# ---- Part B: memory -------------------------------------------------------------------------------

def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def pin_mmap_threshold() -> bool:
    """glibc: every allocation over 128 KiB gets its own mapping, returned to the OS when freed.

    By default the threshold adapts (up to 32 MiB) and freed blocks below it stay resident, which
    moved the measured peaks by up to ~150 MB between configurations of the same size.
    """
    try:
        return ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024) == 1  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _step(head: str, classes: int, dim: int, batch: int, rank: int, world: int, sample_rate: float,
          optimizer: str, seed: int, peaks: dict | None = None) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """One forward + backward + optimiser step of the loss alone, on random embeddings; the loss and
    its optimiser (their parameters, gradients and state) are returned, the rest is freed.
    ``peaks`` gets the peak resident set after the backward pass and after the optimiser step."""
    if head == "full":
        loss = losses.get("arcface", num_classes=classes, embedding_dim=dim, s=64.0, m=0.5)
    else:
        loss = losses.get("partial_fc", num_classes=classes, embedding_dim=dim, margin="arcface",
                          sample_rate=sample_rate, rank=rank, world_size=world)
    opt = make_optimizer([], loss.head_parameters(), TrainConfig(optimizer=optimizer))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, generator=g).requires_grad_()
    y = torch.randint(0, classes, (batch,), generator=g)
    value = loss(x, y)
    opt.zero_grad(set_to_none=True)
    value.backward()
    if peaks is not None:
        peaks["backward"] = peak_resident()
    opt.step()
    if peaks is not None:
        peaks["step"] = peak_resident()
    return loss, opt


def _memory_worker(rank: int, world: int, port: int, out_dir: str, head: str, classes: int, dim: int,
                   batch: int, sample_rate: float, optimizer: str, threads: int, pin: bool) -> None:
    pinned = pin and pin_mmap_threshold()
    torch.set_num_threads(threads)
    if world > 1:
        set_env(rank, world, port)
        dist.init_process_group("gloo")
    try:
        # warm-up: the same step at a tiny size (kernels, thread pools, gloo buffers)
        _step(head, 16 * world, dim, batch, rank, world, sample_rate, optimizer, seed=rank)
        gc.collect()
        before, peaks = resident(), {}
        kept = _step(head, classes, dim, batch, rank, world, sample_rate, optimizer, seed=1000 + rank, peaks=peaks)
        held = resident() - before
        del kept
        # the two counters are read differently (a few pages apart): keep peak >= held
        write(out_dir, rank, {"backward": peaks["backward"] - before, "step": max(peaks["step"] - before, held),
                              "held": held, "pinned": pinned})
    finally:
        if world > 1:
            dist.destroy_process_group()


def computed(head: str, classes: int, dim: int, batch: int, world: int, sample_rate: float, optimizer: str) -> dict:
    """Per-rank bytes from the shapes (rank 0, the largest shard), float32."""
    if head == "full":
        rows, logits = classes, (batch // world, classes)
    else:
        rows = shard_range(classes, 0, world)[1]
        logits = (batch, max(1, int(sample_rate * rows)))  # the whole batch is gathered on every rank
    params = rows * dim * 4
    moments = 2 if optimizer == "adamw" else 1
    return {"rows": rows, "params": params, "grads": params, "state": moments * params,
            "logits_shape": logits, "logits": logits[0] * logits[1] * 4}


def ratio(part: float, full: float) -> str:
    """``part / full`` as ``0.123x``; a full figure within the resident set's noise (a few pages at tiny
    sizes, even <= 0) has no meaningful ratio."""
    return f"{part / full:.3f}x" if full > 0 else "n/a"


def memory(args) -> None:
    names = {"full": "full arcface", "partial": f"partial_fc r={args.sample_rate:g}"}
    print(f"\nPart B, memory per rank: {args.classes:,} classes, {args.dim}-d float32, global batch {args.batch}, "
          f"{args.optimizer} ({'2 moments' if args.optimizer == 'adamw' else '1 momentum buffer'}). Computed from the "
          f"shapes: params, grads, optimiser state, their sum, one logits tensor. Measured (MB over the RSS before the "
          f"loss is built, fresh process, max over ranks, {args.mem_threads} torch thread(s)): ru_maxrss after the "
          f"backward pass, after the {args.optimizer} step, and the RSS still held after it")
    print(f"  {'W':>2s} {'head':20s} {'classes/rank':>12s} {'params':>7s} {'grads':>7s} {'optim':>7s} {'sum':>7s} "
          f"{'logits/step':>14s} {'logits':>7s} | {'fwd+bwd':>7s} {'+step':>7s} {'held':>7s}")
    rows, pinned = {}, set()
    for world in args.world_sizes:
        if args.batch % world:
            raise SystemExit(f"--batch {args.batch} does not split over {world} ranks")
        for head in ("full", "partial"):
            c = computed(head, args.classes, args.dim, args.batch, world, args.sample_rate, args.optimizer)
            c["sum"] = c["params"] + c["grads"] + c["state"]
            measured = "(computed only)"
            if world <= args.measure_up_to:
                # the full classifier is replicated, so one process is one rank; partial_fc needs the group
                ranks = spawn(_memory_worker, world if head == "partial" else 1, head, args.classes, args.dim,
                              args.batch // world, args.sample_rate, args.optimizer, args.mem_threads,
                              not args.adaptive_malloc)
                c |= {key: max(r[key] for r in ranks) for key in ("backward", "step", "held")}
                pinned |= {r["pinned"] for r in ranks}
                measured = f"{c['backward'] / MB:7.1f} {c['step'] / MB:7.1f} {c['held'] / MB:7.1f}"
            rows[world, head] = c
            shape = f"{c['logits_shape'][0]} x {c['logits_shape'][1]}"
            print(f"  {world:2d} {names[head]:20s} {c['rows']:12,d} {c['params'] / MB:7.1f} {c['grads'] / MB:7.1f} "
                  f"{c['state'] / MB:7.1f} {c['sum'] / MB:7.1f} {shape:>14s} {c['logits'] / MB:7.1f} | {measured}",
                  flush=True)
    if pinned:
        print("  glibc mmap threshold " + ("pinned at 128 KiB (mallopt), so freed tensors leave the resident set"
                                           if pinned == {True} else "adaptive (glibc default, or mallopt unavailable)"))
    print("  partial_fc / full per rank:")
    for world in args.world_sizes:
        full, part = rows[world, "full"], rows[world, "partial"]
        measured = (f", measured fwd+bwd {ratio(part['backward'], full['backward'])}, step {ratio(part['step'], full['step'])}"
                    if "step" in part and "step" in full else "")
        print(f"    W={world}: params+grads+optim {ratio(part['sum'], full['sum'])}, logits {ratio(part['logits'], full['logits'])}"
              + measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check in well under a minute")
    parser.add_argument("--smoke", action="store_true",
                        help="tinier still: checks that the script runs (tests/test_benchmarks_smoke.py); its figures mean nothing")
    parser.add_argument("--part", choices=["a", "b", "both"], default="both")
    parser.add_argument("--steps", type=int, help="timed training steps per run (default 30; 3 with --quick)")
    parser.add_argument("--repeats", type=int, help="timed runs per configuration, best taken (default 3; 1 with --quick)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps of the untimed warm-up run")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads of the 1-process run; each of 2 processes gets half (default: every core)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=["arcface", "triplet-batch-hard"])
    parser.add_argument("--identities", type=int, help="synthfaces identities for Part A (default 200; 32 with --quick)")
    parser.add_argument("--p", type=int, default=16, help="identities per global batch (a multiple of 2)")
    parser.add_argument("--k", type=int, default=4, help="images per identity in a batch")
    parser.add_argument("--classes", type=int, help="Part B classes (default 100,000; 4,000 with --quick)")
    parser.add_argument("--dim", type=int, help="Part B embedding size (default 512; 64 with --quick)")
    parser.add_argument("--batch", type=int, help="Part B global batch (default 128; 32 with --quick)")
    parser.add_argument("--sample-rate", type=float, default=0.1, help="partial_fc's share of each shard's classes per step")
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--measure-up-to", type=int, help="measure world sizes up to this, compute the rest "
                        "(default 8; 2 with --quick)")
    parser.add_argument("--mem-threads", type=int, default=1, help="torch threads per process in Part B")
    parser.add_argument("--adaptive-malloc", action="store_true",
                        help="Part B: leave glibc's adaptive mmap threshold (default: pin it at 128 KiB)")
    args = parser.parse_args()
    if args.smoke:  # --quick's defaults below, then smaller: one method, 1 step, world sizes 1 and 2, a tiny Part B
        args.quick, args.steps, args.methods, args.identities, args.p, args.k = True, 1, ["arcface"], 8, 4, 2
        args.classes, args.dim, args.batch, args.world_sizes = 64, 16, 8, [1, 2]
    q = args.quick
    args.steps = args.steps or (3 if q else 30)
    args.repeats = args.repeats or (1 if q else 3)
    args.identities = args.identities or (32 if q else 200)
    args.classes = args.classes or (4_000 if q else 100_000)
    args.dim = args.dim or (64 if q else 512)
    args.batch = args.batch or (32 if q else 128)
    args.measure_up_to = args.measure_up_to or (2 if q else 8)
    if q:
        args.warmup_steps = min(args.warmup_steps, 1)
    # The forkserver imports this script's module (torch, mlcompare) and what an optimiser's first step
    # imports lazily (torch._dynamo, ~1 s) once; every process is then forked from it.
    mp.set_forkserver_preload([os.path.splitext(os.path.basename(__file__))[0], "torch._dynamo"])
    print(f"torch {torch.__version__}, {len(os.sched_getaffinity(0))} cores; load average {os.getloadavg()[0]:.1f} "
          "at the start (other processes on these cores skew Part A's timings)")
    start = time.perf_counter()
    if args.part in ("a", "both"):
        data = datasets.load(f"synthfaces:identities={args.identities},images_per_identity=8", size=32)
        throughput(args, data)
    if args.part in ("b", "both"):
        memory(args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
