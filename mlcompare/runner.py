"""Run a comparison: load data once, fix the test protocol, train and score every method x seed."""
from __future__ import annotations

import dataclasses
import inspect
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

import evaluations
import miners
from mlcompare import data as datasets
from mlcompare import distributed
from mlcompare import losses
from mlcompare.backbones import ResNetFace
from mlcompare.config import ComparisonConfig, MethodConfig
from mlcompare.data.facedata import FaceData
from mlcompare.data.noise import flip_labels
from mlcompare.data.protocol import split_identities
from mlcompare.errors import UserError
from mlcompare.rundir import (RunDir, checkpoint_path, curves_path, read_history, read_results, write_csv_atomic,
                              write_npz_atomic)
from mlcompare.scoring import TestProtocol, score
from mlcompare.trainer import TrainingDiverged, embed, train

RAW_PIXELS = "raw pixels"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: torch sees no CUDA GPU here; use --device cpu (or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda[:N], got '{name}'")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    """One-line error for a precision the device cannot run usefully (fp16 on the CPU)."""
    if precision == "fp16" and device.type == "cpu":
        raise UserError("--precision fp16 needs a CUDA GPU (on the CPU half-precision matmuls are emulated, "
                        "several times slower than fp32); use --precision bf16 or fp32 on the CPU")


def prepare_data(config: ComparisonConfig, device: torch.device = torch.device("cpu")
                 ) -> tuple[FaceData, FaceData, TestProtocol]:
    """Train set, test set (disjoint identities) and the fixed protocol on the test set.

    Generated training images are rendered on ``device`` and stay there; the test set is on the CPU.
    """
    d = config.data
    full = datasets.load(d.train, size=d.size, seed=d.split_seed, stream=d.workers > 0, device=str(device))
    if d.test:
        train_set, test_set = full, datasets.load(d.test, size=d.size, seed=d.split_seed + 1)
    else:
        train_set, test_set = split_identities(full, test_fraction=d.test_fraction, seed=d.split_seed)
    if d.workers and isinstance(train_set.images, torch.Tensor):
        warnings.warn(f"workers = {d.workers} applies to imagefolder: and recordio: training sets; "
                      f"{d.train.partition(':')[0]} is held in memory, so no worker processes are started", stacklevel=2)
    test_set = test_set.in_memory().to("cpu")  # every model embeds all of it
    return train_set, test_set, TestProtocol.build(test_set.labels, pairs=d.verification_pairs, seed=d.split_seed)


def build_loss(method: MethodConfig, *, num_classes: int, embedding_dim: int,
               ctx: distributed.Context = distributed.Context()) -> losses.Loss:
    params = dict(method.params)
    if "world_size" in inspect.signature(losses.REGISTRY[method.loss].__init__).parameters and ctx.active:
        params.setdefault("rank", ctx.rank)  # a sharded classifier (partial_fc) takes its shard from torchrun
        params.setdefault("world_size", ctx.world_size)
    if method.miner:
        miner_params = dict(method.miner_params)
        # A miner that keeps embeddings (the memory bank) needs their size: the method's, unless set.
        if "embedding_dim" in inspect.signature(miners.REGISTRY[method.miner].__init__).parameters:
            miner_params.setdefault("embedding_dim", embedding_dim)
        params["miner"] = miners.get(method.miner, **miner_params)
    return losses.get(method.loss, num_classes=num_classes, embedding_dim=embedding_dim, **params)


def raw_pixel_embeddings(images: torch.Tensor) -> torch.Tensor:
    """The untrained baseline: each image's pixels, mean-centred (cosine on them is then NCC)."""
    flat = images.float().flatten(1)
    return flat - flat.mean(dim=1, keepdim=True)


def run(config: ComparisonConfig, out: Path, *, device: str = "auto", force: bool = False, resume: bool = False,
        progress: bool = True) -> Path:
    """Train and score every method of ``config`` for each seed; write the run directory and report."""
    from mlcompare import report

    dev = resolve_device(device)
    ctx = distributed.from_env(dev)
    if ctx.active and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
    check_precision(config.train.precision, dev)
    rundir = RunDir(out, force=force, resume=resume)  # every rank checks before rank 0 creates anything
    ctx.barrier()
    train_set, test_set, protocol = prepare_data(config, dev)
    if ctx.is_main:
        rundir.create()
        np.save(rundir.path / "test_labels_sample.npy", protocol.labels[_projection_sample(protocol.labels)].numpy())
        resolved = config.to_dict() | {"device": str(dev), "world_size": ctx.world_size,
                                       "train_identities": train_set.num_identities,
                                       "train_images": len(train_set), "test_identities": test_set.num_identities,
                                       "test_images": len(test_set), "verification_pairs": len(protocol.pairs.same),
                                       "torch": torch.__version__}
        rundir.save_config(resolved)
    ctx.barrier()
    results = read_results(rundir.path) if resume else pd.DataFrame()
    history = read_history(rundir.path) if resume else pd.DataFrame()

    def done(method: str, seed: int) -> bool:
        return not results.empty and bool(((results.method == method) & (results.seed == seed) & (results.status == "ok")).any())

    def record(row: dict[str, Any], curves: dict | None, rows: list[dict[str, Any]] | None) -> None:
        nonlocal results, history
        if not ctx.is_main:
            return
        if not results.empty:
            results = results[~((results.method == row["method"]) & (results.seed == row["seed"]))]
        results = pd.concat([results, pd.DataFrame([row])], ignore_index=True)
        write_csv_atomic(rundir.path / "results.csv", results)
        if curves is not None:
            write_npz_atomic(curves_path(rundir.path, row["method"], row["seed"]), **curves)
        if rows:
            if not history.empty:
                history = history[~((history.method == row["method"]) & (history.seed == row["seed"]))]
            history = pd.concat([history, pd.DataFrame(rows)], ignore_index=True)
            write_csv_atomic(rundir.path / "history.csv", history)

    if ctx.is_main and not done(RAW_PIXELS, 0):
        metrics, curves = score(raw_pixel_embeddings(test_set.images), protocol)
        record({"method": RAW_PIXELS, "group": RAW_PIXELS, "seed": 0, "loss": "none", "family": "baseline", "status": "ok",
                **metrics, "train_seconds": float("nan"), "images_per_s": float("nan"), "steps": 0, "message": ""}, curves, None)

    noisy_sets: dict[float, FaceData] = {0.0: train_set}
    for seed in range(config.seeds):
        for method in config.methods:
            if done(method.name, seed):
                continue
            if method.label_noise not in noisy_sets:  # same flips for every method at this level
                noisy_sets[method.label_noise] = flip_labels(train_set, method.label_noise, seed=config.data.split_seed)
            row, curves, rows = _train_and_score(config, method, seed, noisy_sets[method.label_noise], test_set, protocol, dev,
                                                 checkpoint_path(rundir.path, method.name, seed),
                                                 resume, progress, ctx)
            record(row, curves, rows)
            ctx.barrier()
    if not ctx.is_main:
        return rundir.final
    report.render(rundir.path)
    return rundir.commit()


def _train_and_score(config: ComparisonConfig, method: MethodConfig, seed: int, train_set: FaceData,
                     test_set: FaceData, protocol: TestProtocol, device: torch.device, checkpoint: Path,
                     resume: bool, progress: bool, ctx: distributed.Context = distributed.Context(),
                     ) -> tuple[dict[str, Any], dict | None, list[dict[str, Any]]]:
    """Train one method x seed (on every rank) and score it (on rank 0: other ranks return no metrics)."""
    b = config.backbone
    dim = method.embedding_dim or b.embedding_dim
    train_cfg = dataclasses.replace(config.train, p=method.p or config.train.p, k=method.k or config.train.k)
    # Same seed -> same backbone initialisation for every method; the loss's weights come after.
    torch.manual_seed(seed)
    model = ResNetFace(image_size=config.data.size, widths=tuple(b.widths), blocks=tuple(b.blocks),
                       embedding_dim=dim, dropout=b.dropout)
    loss = build_loss(method, num_classes=train_set.num_identities, embedding_dim=dim, ctx=ctx)
    row: dict[str, Any] = {"method": method.name, "group": method.group or method.name, "seed": seed,
                           "loss": method.loss, "family": loss.family, "params": _params_text(method),
                           "label_noise": method.label_noise, "embedding_dim": dim, "p": train_cfg.p, "k": train_cfg.k,
                           "precision": train_cfg.precision}
    batch = train_cfg.p * train_cfg.k
    bar = tqdm(total=train_cfg.steps * batch, unit="img", unit_scale=True, desc=f"{method.name} s{seed}",
               disable=not progress or not ctx.is_main, file=sys.stderr, dynamic_ncols=True, leave=True)
    shown = {"steps": 0}

    def on_step(steps_done: int, value: float) -> None:
        bar.update((steps_done - shown["steps"]) * batch)
        shown["steps"] = steps_done
        bar.set_postfix(step=f"{steps_done}/{train_cfg.steps}", loss=f"{value:.3f}")

    tic = time.perf_counter()
    try:
        result = train(model, loss, train_set, train_cfg, seed=seed, device=device, checkpoint=checkpoint,
                       resume=resume, on_step=on_step, ctx=ctx, workers=config.data.workers,
                       validate=(lambda: validation_accuracy(model, test_set, protocol, device)) if ctx.is_main else None)
        # Under torchrun each rank embeds its share of the test set and searches its share of the
        # references; every rank then holds the same scores, and rank 0 records them.
        embeddings = distributed.gather_rows(embed(model, test_set.images[distributed.share(len(test_set), ctx)],
                                                   device=device, precision=train_cfg.precision), ctx)
        if not torch.isfinite(embeddings).all():
            raise TrainingDiverged("the model produces NaN or inf embeddings")
        search = distributed.knn_over_ranks(ctx, _faiss_device(device)) if ctx.active else evaluations.knn
        metrics, curves = score(embeddings, protocol, search=search)
        if not ctx.is_main:
            bar.close()
            return row | {"status": "ok"}, None, []
        curves["embeddings"] = embeddings[_projection_sample(protocol.labels)].numpy()
        curves |= angle_histograms(model, loss, train_set, device)
    except TrainingDiverged as err:
        bar.close()
        print(f"{method.name} (seed {seed}) failed: {err}; the other methods go on", file=sys.stderr)
        return row | {"status": "failed", "message": str(err), "train_seconds": time.perf_counter() - tic}, None, []
    bar.close()
    rows = [{"method": method.name, "seed": seed} | h for h in result.history]
    return row | {"status": "ok", **metrics, "train_seconds": result.seconds, "images_per_s": result.images_per_s,
                  "steps": result.steps, "message": ""}, curves, rows


def _faiss_device(device: torch.device) -> str:
    """The faiss device of a torchrun rank: its own GPU when faiss sees it, else the CPU."""
    import faiss

    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > (device.index or 0):
        return f"cuda:{device.index or 0}"
    return "cpu"


def validation_accuracy(model: torch.nn.Module, test_set: FaceData, protocol: TestProtocol, device: torch.device) -> float:
    """10-fold verification accuracy on the test pairs, for the per-step curve (only the images the pairs use)."""
    pairs = protocol.pairs
    used, inverse = torch.unique(torch.cat([pairs.a, pairs.b]), return_inverse=True)
    emb = embed(model, test_set.images[used], device=device)
    a, b = inverse[: len(pairs.a)], inverse[len(pairs.a):]
    return evaluations.verification(evaluations.pair_scores(emb[a], emb[b]), pairs.same.numpy(), folds=pairs.folds)["accuracy"]


ANGLE_BINS = np.linspace(0.0, 180.0, 91)  # degrees, 2-degree bins


@torch.no_grad()
def angle_histograms(model: torch.nn.Module, loss: losses.Loss, train_set: FaceData, device: torch.device,
                     *, images: int = 1000) -> dict[str, np.ndarray]:
    """Histograms of the angles between training embeddings and their own class centre (target) and
    the other class centres (non-target), as in the ArcFace paper's figures; empty for pair losses."""
    if loss.family != "classification" or not isinstance(getattr(loss, "weight", None), torch.Tensor):
        return {}
    pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))[:images]
    emb = embed(model, train_set.images[pick], device=device).to(device)
    if hasattr(loss, "subcenter_cosines"):  # [N, C, K]: the angle to a class is to its nearest sub-centre
        cos = loss.subcenter_cosines(emb).max(dim=2).values
    elif hasattr(loss, "class_cosines"):
        cos = loss.class_cosines(emb)
    else:
        cos = F.normalize(emb, dim=1) @ F.normalize(loss.weight, dim=1).t()
    if cos.shape != (len(pick), train_set.num_identities):
        return {}
    theta = torch.rad2deg(torch.acos(cos.float().clamp(-1, 1))).cpu()
    target = torch.zeros_like(theta, dtype=torch.bool)
    target[torch.arange(len(pick)), train_set.labels[pick]] = True
    return {"theta_target_hist": np.histogram(theta[target].numpy(), ANGLE_BINS)[0],
            "theta_other_hist": np.histogram(theta[~target].numpy(), ANGLE_BINS)[0]}


def _projection_sample(labels: torch.Tensor, identities: int = 8) -> torch.Tensor:
    """Test images of the first ``identities`` identities: kept per method for the report's 2-D view."""
    return torch.nonzero(labels < identities).squeeze(1)


BUDGETS = {"quick": 1, "standard": 4, "long": 16}  # multiples of a comparison's own steps


def _params_text(method: MethodConfig) -> str:
    parts = [f"{k}={v}" for k, v in method.params.items()]
    parts += [f"{k}={getattr(method, k)}" for k in ("label_noise", "embedding_dim", "p", "k") if getattr(method, k)]
    if method.miner:
        inner = ",".join(f"{k}={v}" for k, v in method.miner_params.items())
        parts.append(f"miner={method.miner}" + (f"({inner})" if inner else ""))
    return " ".join(parts)


def apply_overrides(config: ComparisonConfig, *, data: str | None = None, test_data: str | None = None,
                    seeds: int | None = None, steps: int | None = None, budget: str | None = None,
                    precision: str | None = None, compile: bool | None = None,
                    workers: int | None = None) -> ComparisonConfig:
    """Command-line options replace the comparison's own values.

    ``budget`` scales the comparison's steps (and warm-up): quick x1, standard x4, long x16;
    ``steps`` sets them outright and wins over ``budget``.
    """
    if budget:
        if budget not in BUDGETS:
            raise UserError(f"--budget must be one of {', '.join(BUDGETS)}, got '{budget}'")
        t = config.train
        config = dataclasses.replace(config, train=dataclasses.replace(
            t, steps=t.steps * BUDGETS[budget], warmup_steps=t.warmup_steps * BUDGETS[budget]))
    if data:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, train=data))
    if test_data:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, test=test_data))
    if seeds is not None:
        if seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {seeds}")
        config = dataclasses.replace(config, seeds=seeds)
    if steps is not None:
        if steps < 1:
            raise UserError(f"--steps must be >= 1, got {steps}")
        train = config.train
        config = dataclasses.replace(config, train=dataclasses.replace(
            train, steps=steps, warmup_steps=min(train.warmup_steps, max(1, steps // 10))))
    if precision is not None:
        if precision not in ("fp32", "bf16", "fp16"):
            raise UserError(f"--precision must be fp32, bf16 or fp16, got '{precision}'")
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, precision=precision))
    if compile is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, compile=compile))
    if workers is not None:
        if workers < 0:
            raise UserError(f"--workers must be >= 0, got {workers}")
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, workers=workers))
    return config
