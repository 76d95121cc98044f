"""Run a comparison: load data once, fix the test protocol, train and score every method x seed."""
from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import evaluations
from mlcompare import backbones, losses
from mlcompare import data as datasets
from mlcompare.backbones import build_backbone, embed
from mlcompare.config import limits
from mlcompare.config.comparison import ComparisonConfig, MethodConfig, TrainConfig, epoch_steps
from mlcompare.config.names import RAW_PIXELS
from mlcompare.config.results_schema import ResultRow
from mlcompare.data import leakage
from mlcompare.data.facedata import FaceData
from mlcompare.data.framing import Framing
from mlcompare.data.noise import flip_labels
from mlcompare.errors import UserError
from mlcompare.run import benchmarks, comparison_tests, provenance, quality_stats, saved
from mlcompare.run.benchmarks import Benchmark
from mlcompare.run.rundir import (RunDir, checkpoint_path, curves_path, read_history, read_results, write_csv_atomic,
                                  write_npz_atomic)
from mlcompare.run.scoring import TestProtocol, score, validation_accuracy
from mlcompare.train import distributed, tensorboard_log
from mlcompare.train.trainer import TrainingDiverged, train


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


def framing(config: ComparisonConfig) -> Framing:
    """The comparison's ``[data]`` crop and resize, as the readers take it."""
    d = config.data
    return Framing(crop=d.crop, box=tuple(d.crop_box) or None, keep_aspect=d.keep_aspect)


def prepare_data(config: ComparisonConfig, device: torch.device = torch.device("cpu"), *, progress: bool = True
                 ) -> tuple[FaceData, FaceData, TestProtocol]:
    """Train set, test set (disjoint identities) and the fixed protocol on the test set.

    Generated training images are rendered on ``device`` and stay there; the test set is on the CPU.
    ``progress``: bars while large image files are decoded (off with ``--no-progress``).
    Label noise asked for on the data spec (``synthfaces:label_noise=X``) is applied after the split,
    to training images only and towards training identities only: test labels stay clean.
    A separate test set (``data.test``) showing people of the training set is refused
    (:mod:`mlcompare.data.leakage`).
    """
    d = config.data
    if d.test and d.test == d.train and not d.train.startswith("synthfaces"):
        raise UserError(f"--test-data {d.test} is the training data itself: every test person would be a training "
                        "person; give a test set of other people, or leave --test-data out to hold out identities")
    train_set, test_set = datasets.load_split(d.train, d.test, size=d.size, seed=d.split_seed,
                                              test_fraction=d.test_fraction, stream=d.workers > 0, device=str(device),
                                              framing=framing(config), progress=progress)
    shared = leakage.overlap(train_set, files=test_set.files, people=test_set.identities, named=test_set.named)
    if shared and d.test:
        raise UserError(f"--test-data {d.test}: {shared.describe(test_set.num_identities)}; "
                        "test on people the models never train on")
    if shared:  # the held-out split of one folder: the same images under two identity names
        raise UserError(f"{d.train}: held-out test identities share images with training identities: "
                        f"{shared.describe(test_set.num_identities)}; an identity folder copied or linked under "
                        "another name is one person: remove the copies")
    twins = leakage.duplicate_identities(train_set)
    if twins:
        warnings.warn(f"{d.train}: {len(twins)} pair(s) of training identities share images (e.g. '{twins[0][0]}' and "
                      f"'{twins[0][1]}'): a folder copied or linked under another name is one person counted twice; "
                      "remove the copies", stacklevel=2)
    if d.workers and isinstance(train_set.images, torch.Tensor):
        warnings.warn(f"workers = {d.workers} applies to imagefolder: and recordio: training sets; "
                      f"{d.train.partition(':')[0]} is held in memory, so no worker processes are started", stacklevel=2)
    test_set = test_set.in_memory(progress=progress).to("cpu")  # every model embeds all of it
    return train_set, test_set, TestProtocol.build(test_set.labels, pairs=d.verification_pairs, seed=d.split_seed)


@dataclass
class Fold:
    """What the models of one cross-validation fold train on and are scored on; ``number`` 0 is a
    comparison without cross-validation (its one fold)."""

    number: int
    train_set: FaceData
    test_set: FaceData
    protocol: TestProtocol
    benchmarks: list[Benchmark] = field(default_factory=list)
    shared_names: dict[str, int] = field(default_factory=dict)  # benchmark -> names it shares with training (cross-dataset)


def prepare_folds(config: ComparisonConfig, device: torch.device = torch.device("cpu"), *,
                  progress: bool = True) -> list[Fold]:
    """The folds a comparison runs: one (:func:`prepare_data`, plus the benchmarks), or under
    ``[crossval]`` one per split of the named benchmark: fold k trains on the people outside split k
    (found by the files and names the split's pairs show) and tests on split k's people, its
    held-out-identity protocols and every benchmark's split-k pairs.

    Every benchmark is checked against the fold's training people: an overlap is refused (before
    anything is written) unless the benchmark declares ``overlap_ok``."""
    d = config.data
    benches = [benchmarks.load(b, size=d.size, framing=framing(config)) for b in config.benchmarks]
    if not config.crossval.benchmark:
        train_set, test_set, protocol = prepare_data(config, device, progress=progress)
        return [_fold(0, train_set, test_set, protocol, benches)]
    if d.test:
        raise UserError(f"--test-data {d.test} with [crossval]: the folds choose the test people; "
                        "remove one of them")
    cv = next(b for b in benches if b.name == config.crossval.benchmark)
    ks = config.crossval.folds or cv.splits()
    full = datasets.load(d.train, size=d.size, seed=d.split_seed, stream=d.workers > 0, device=str(device),
                         framing=framing(config), progress=progress)
    folds = []
    for k in ks:
        split = cv.split_only(k)
        held_out = leakage.overlap(full, files=split.files, people=split.people, named=True).identities
        if len(held_out) < 2:
            raise UserError(f"crossval: split {k} of benchmark {cv.name} shows {len(held_out)} people of the training "
                            f"data {d.train}; cross-validation needs the benchmark's own images as training data "
                            "(e.g. cfp:DIR for a cfp benchmark)")
        is_test = torch.isin(full.labels, torch.tensor(sorted(held_out)))
        train_set = full.subset(torch.nonzero(~is_test).squeeze(1))
        test_set = full.subset(torch.nonzero(is_test).squeeze(1)).in_memory(progress=progress).to("cpu")
        protocol = TestProtocol.build(test_set.labels, pairs=d.verification_pairs, seed=d.split_seed)
        fold_benches = [b.split_only(k) if b.split is not None else b for b in benches]
        folds.append(_fold(k, train_set, test_set, protocol, fold_benches))
    return folds


def _fold(number: int, train_set: FaceData, test_set: FaceData, protocol: TestProtocol,
          benches: list[Benchmark]) -> Fold:
    """A fold, once no benchmark shows training people (unless it accepts them)."""
    shared = {}
    for bench in benches:
        found = leakage.overlap(train_set, files=bench.files, people=bench.people, named=bench.people is not None)
        if found and not bench.overlap_ok:
            where = f" (fold {number})" if number else ""
            raise UserError(f"benchmark {bench.name}{where}: {found.describe(len(set(bench.people or [])))}; "
                            f"train on other people, or declare overlap_ok = true in its [[benchmarks]] entry")
        shared[bench.name] = leakage.shared_names(train_set, bench.people) if train_set.named else 0
    return Fold(number, train_set, test_set, protocol, [bench.decoded() for bench in benches], shared)


def method_batch(config: ComparisonConfig, method: MethodConfig) -> TrainConfig:
    """The train section as ``method`` runs it (its own P or K, and its own ``train`` values, where it sets them)."""
    return dataclasses.replace(config.train, p=method.p or config.train.p, k=method.k or config.train.k, **method.train)


def class_counts(data: FaceData) -> torch.Tensor:
    """``[num_identities]`` int64: images per identity, what a loss declaring ``needs_class_counts`` gets."""
    return torch.bincount(data.labels.cpu(), minlength=data.num_identities)


def build_loss(method: MethodConfig, *, num_classes: int, embedding_dim: int, class_counts: torch.Tensor | None = None,
               ctx: distributed.Context = distributed.Context()) -> losses.Loss:
    """``method``'s loss with its miner, for this process's rank; ``class_counts`` (see :func:`class_counts`)
    of the set it trains on, passed on to a loss that declares it needs them. A bad parameter is a
    :class:`UserError` naming the method (the loss's own ``ValueError`` says which parameter and its valid range)."""
    try:
        miner = losses.build_miner(method.miner, method.miner_params, embedding_dim=embedding_dim) if method.miner else None
        return losses.get(method.loss, num_classes=num_classes, embedding_dim=embedding_dim, miner=miner,
                          rank=ctx.rank, world_size=ctx.world_size, family=method.family, class_counts=class_counts,
                          **method.params)
    except (ValueError, TypeError) as err:
        raise UserError(f"method '{method.name}': {err}") from err


def check_methods(config: ComparisonConfig, train_set: FaceData, ctx: distributed.Context) -> None:
    """Everything that can fail before training, checked before anything is written: every method's
    loss and miner are built (on the meta device: no memory, no RNG draws) and its batch shape is
    checked against the loaded training set."""
    counts = class_counts(train_set)
    identities, most = train_set.num_identities, int(counts.max())
    for method in config.methods:
        dim = method.embedding_dim or config.backbone.embedding_dim
        batch = method_batch(config, method)
        where = f"method '{method.name}'" if (method.p or method.k) else "train"
        if method.train_identities > identities:
            raise UserError(f"method '{method.name}': train_identities={method.train_identities} but the training set "
                            f"has {identities} identities; lower it or give more data")
        if batch.p > (method.train_identities or identities):
            have = method.train_identities or identities
            raise UserError(f"{where}: p={batch.p} identities per batch but the training set has {have}; "
                            f"lower it, e.g. --set train.p={max(2, have // 2)}")
        if batch.k > most:
            raise UserError(f"{where}: k={batch.k} images per identity per batch but no training identity has more "
                            f"than {most}; lower it, e.g. --set train.k={max(2, most)}")
        limits.check_batch_split(batch.p, ctx.world_size, where)
        with torch.device("meta"):
            build_loss(method, num_classes=identities, embedding_dim=dim, class_counts=counts, ctx=ctx)


def raw_pixel_embeddings(images: torch.Tensor) -> torch.Tensor:
    """The untrained baseline: each image's pixels, mean-centred (cosine on them is then NCC)."""
    flat = images.float().flatten(1)
    return flat - flat.mean(dim=1, keepdim=True)


@dataclass
class MethodResult:
    """What one method x seed leaves in the run directory: its results.csv row, its curves file
    (None: nothing to save, e.g. failed) and its history.csv rows."""

    row: ResultRow
    curves: dict[str, np.ndarray] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    model: torch.nn.Module | None = None  # the trained backbone (not written; the ensemble of `tune` uses it)


class RunRecords:
    """results.csv, history.csv and curves/ of a run directory, each rewritten atomically per result.

    A result is keyed by method and seed, and under cross-validation by its ``fold`` too."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.results = read_results(path) if resume else pd.DataFrame()
        self.history = read_history(path) if resume else pd.DataFrame()

    def done(self, method: str, seed: int, fold: int = 0) -> bool:
        r = self.results
        return not r.empty and bool((_rows_of(r, method, seed, fold) & (r.status == "ok")).any())

    def write(self, result: MethodResult) -> None:
        method, seed, fold = result.row.method, result.row.seed, result.row.fold
        self.results = pd.concat([_without(self.results, method, seed, fold), pd.DataFrame([result.row.as_dict()])],
                                 ignore_index=True)
        write_csv_atomic(self.path / "results.csv", self.results)
        if result.curves is not None:
            write_npz_atomic(curves_path(self.path, method, seed, fold), **result.curves)
        if result.history:
            self.history = pd.concat([_without(self.history, method, seed, fold), pd.DataFrame(result.history)],
                                     ignore_index=True)
            write_csv_atomic(self.path / "history.csv", self.history)


def _rows_of(frame: pd.DataFrame, method: str, seed: int, fold: int) -> pd.Series:
    rows = (frame.method == method) & (frame.seed == seed)
    return rows & (frame.fold == fold) if "fold" in frame.columns else rows


def _without(frame: pd.DataFrame, method: str, seed: int, fold: int = 0) -> pd.DataFrame:
    return frame if frame.empty else frame[~_rows_of(frame, method, seed, fold)]


@dataclass
class Session:
    """A run directory being written: the device, the distributed context, the folds (data,
    protocol and benchmarks; one without cross-validation) and the records; built by
    :func:`open_session` once every input has been checked."""

    config: ComparisonConfig
    device: torch.device
    ctx: distributed.Context
    rundir: RunDir
    folds: list[Fold]
    records: RunRecords | None = None
    provenance: dict[str, Any] | None = None  # rank 0's provenance.json, completed by close_session
    clock: float = 0.0  # time.monotonic() when the session opened: its wall time runs from here

    # The first fold's sets: what a comparison without cross-validation (and `tune`) trains and tests on.
    @property
    def train_set(self) -> FaceData:
        return self.folds[0].train_set

    @property
    def test_set(self) -> FaceData:
        return self.folds[0].test_set

    @property
    def protocol(self) -> TestProtocol:
        return self.folds[0].protocol


def open_session(config: ComparisonConfig, out: Path, *, device: str, force: bool, resume: bool,
                 check: Callable[[FaceData], None] | None = None, progress: bool = True,
                 command: str | None = None) -> Session:
    """Check every input (devices, the run directory, data, benchmarks and their overlap with the
    training people, every method's loss and batch shape, and ``check(train_set)``: a command's own),
    then create the run directory (with its provenance.json; ``command``: the command line, default
    this process's) and score the raw-pixels floor. Bad input leaves nothing behind."""
    clock = time.monotonic()
    dev = resolve_device(device)
    ctx = distributed.from_env(dev)
    if ctx.active and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
    facts = provenance.collect({"train": config.data.train, "test": config.data.test}, device=str(dev),
                               command=command or provenance.command_line(None)) if ctx.is_main else None
    check_precision(config.train.precision, dev)
    rundir = RunDir(out, force=force, resume=resume)  # every rank checks before rank 0 creates anything
    if resume:
        rundir.check_resumable(config.to_dict())
    ctx.barrier()
    folds = prepare_folds(config, dev, progress=progress)
    for fold in folds:
        check_methods(config, fold.train_set, ctx)
        if check is not None:
            check(fold.train_set)
    backbone_cost = backbones.cost(config.backbone, image_size=config.data.size)  # also checks backbone.pretrained fits
    if config.logging.tensorboard:
        tensorboard_log.check_available()
    first = folds[0]
    if ctx.is_main:
        saved_until = provenance.last_saved(rundir.path) if resume else None  # before this session writes
        rundir.create()
        np.save(rundir.path / "test_labels_sample.npy", first.protocol.labels[projection_sample(first.protocol.labels)].numpy())
        rundir.save_config(config.to_dict() | {
            "device": str(dev), "world_size": ctx.world_size, "train_identities": first.train_set.num_identities,
            "train_images": len(first.train_set), "test_identities": first.test_set.num_identities,
            "test_images": len(first.test_set), "verification_pairs": len(first.protocol.pairs.same),
            "torch": torch.__version__, "backbone_cost": backbone_cost, "data_source": first.train_set.source}
            | ({"benchmark_sets": benchmarks.describe(first.benchmarks)} if first.benchmarks else {})
            | ({"shared_names": first.shared_names} if any(first.shared_names.values()) else {})
            | ({"folds": [{"fold": f.number, "train_identities": f.train_set.num_identities,
                           "test_identities": f.test_set.num_identities} for f in folds]} if first.number else {}))
        facts = provenance.resumed(facts, provenance.read(rundir.path) if resume else None, last_saved=saved_until)
        provenance.write(rundir.path, facts)
    ctx.barrier()
    session = Session(config, dev, ctx, rundir, folds, RunRecords(rundir.path, resume=resume), facts, clock)
    for fold in folds:
        if ctx.is_main and not session.records.done(RAW_PIXELS, 0, fold.number):
            metrics, curves = score(raw_pixel_embeddings(fold.test_set.images), fold.protocol)
            metrics |= score_benchmarks(fold.benchmarks, raw_pixel_embeddings)
            session.records.write(MethodResult(ResultRow(
                RAW_PIXELS, RAW_PIXELS, 0, "none", "baseline", metrics=metrics, train_seconds=float("nan"),
                images_per_s=float("nan"), steps=0, fold=fold.number), curves))
    return session


def _fold_column(fold: Fold) -> dict[str, int]:
    """The ``fold`` column of a results row: only under cross-validation."""
    return {"fold": fold.number} if fold.number else {}


def score_benchmarks(benches: list[Benchmark], embed_images: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """Every benchmark's results.csv columns, ``embed_images(uint8 images)`` giving the embeddings."""
    scores: dict[str, float] = {}
    for bench in benches:
        emb = embed_images(bench.images)
        if not torch.isfinite(emb).all():
            raise TrainingDiverged(f"the model produces NaN or inf embeddings on benchmark {bench.name}")
        scores |= bench.score(emb)
    return scores


@dataclass
class Entry:
    """One row group of the final table: ``method`` trained under ``config`` (its own train section,
    e.g. a tuned learning rate), with ``extra`` columns on its rows (``setting``)."""

    config: ComparisonConfig
    method: MethodConfig
    extra: dict[str, Any] = field(default_factory=dict)


def train_entries(session: Session, entries: list[Entry], *, resume: bool, progress: bool) -> None:
    """Train and score every entry for each fold and seed (fold-major, then seed-major), skipping
    what a resumed run has."""
    records, ctx = session.records, session.ctx
    for fold in session.folds:
        cache: dict[tuple[int, float], FaceData] = {}
        for seed in range(session.config.seeds):
            for entry in entries:
                name = entry.method.name
                if records.done(name, seed, fold.number):
                    continue
                key = (entry.method.train_identities, entry.method.label_noise)
                if key not in cache:
                    cache[key] = training_set(fold.train_set, entry.method, seed=session.config.data.split_seed)
                result = train_and_score(entry.config, entry.method, seed, cache[key], fold.test_set, fold.protocol,
                                         session.device, benchmarks=fold.benchmarks,
                                         checkpoint=checkpoint_path(session.rundir.path, name, seed, fold.number),
                                         resume=resume, progress=progress, ctx=ctx,
                                         tensorboard=tensorboard_log.log_dir(
                                             session.rundir.path, f"{name}-f{fold.number}" if fold.number else name, seed)
                                         if entry.config.logging.tensorboard else None)
                if ctx.is_main:
                    column = _fold_column(fold)
                    row = dataclasses.replace(result.row, fold=fold.number, extra=result.row.extra | entry.extra)
                    records.write(MethodResult(row, result.curves,
                                               [row | column for row in result.history]))
                ctx.barrier()


def finish(session: Session) -> None:
    """What the report needs computed from a finished run, saved in the run directory (rank 0): the
    quality statistics (stats/quality.json, when ``[data] quality`` asks) and the tests between methods
    (stats/tests.json), so that rendering only reads."""
    quality_stats.finish(session.rundir.path, session.records.results, quality=session.config.data.quality)
    comparison_tests.finish(session.rundir.path, saved.load(session.rundir.path))


def close_session(session: Session, render: Callable[[Path], Any] | None = None) -> Path:
    """Finish the run (:func:`finish`), render its report with ``render(run_dir)`` (the command line
    passes :func:`mlcompare.report.render.render`; None: no report) and swap a ``--force`` run into place
    (rank 0); the run directory."""
    if not session.ctx.is_main:
        return session.rundir.final
    provenance.write(session.rundir.path, provenance.finished(session.provenance, started=session.clock))
    finish(session)
    if render is not None:
        render(session.rundir.path)
    final = session.rundir.commit()
    session.rundir.release()  # a run that stops early releases it on exit (mlcompare.run.runlock)
    return final


def run(config: ComparisonConfig, out: Path, *, device: str = "auto", force: bool = False, resume: bool = False,
        progress: bool = True, command: str | None = None, render: Callable[[Path], Any] | None = None) -> Path:
    """Train and score every method of ``config`` for each seed; write the run directory and, with
    ``render(run_dir)``, its report (``command``: the command line its provenance records, default this process's).

    Every input is checked (devices, data, every method's loss and batch shape) before the run
    directory is created, so that bad input leaves nothing behind.
    """
    session = open_session(config, out, device=device, force=force, resume=resume, progress=progress,
                           command=command)
    train_entries(session, [Entry(config, m) for m in config.methods], resume=resume, progress=progress)
    return close_session(session, render)


def training_set(data: FaceData, method: MethodConfig, *, seed: int) -> FaceData:
    """The training set as ``method`` sees it: a seeded subset of ``train_identities`` identities
    (the same for every method asking for that many), then ``label_noise`` of its labels flipped
    (the same flips for every method at that level)."""
    if method.train_identities:
        keep = torch.randperm(data.num_identities, generator=torch.Generator().manual_seed(seed))[:method.train_identities]
        data = data.subset(torch.nonzero(torch.isin(data.labels, keep)).squeeze(1))
    return flip_labels(data, method.label_noise, seed=seed) if method.label_noise else data


def train_and_score(config: ComparisonConfig, method: MethodConfig, seed: int, train_set: FaceData,
                    test_set: FaceData, protocol: TestProtocol, device: torch.device, *, checkpoint: Path | None,
                    resume: bool, progress: bool, ctx: distributed.Context = distributed.Context(),
                    tensorboard: Path | None = None, validate: Callable[[torch.nn.Module], float] | None = None,
                    on_log: Callable[[dict[str, Any]], None] | None = None, benchmarks: list[Benchmark] = ()) -> MethodResult:
    """Train one method x seed (on every rank) and score it (on rank 0: other ranks return no metrics),
    on the test protocol and on each of ``benchmarks``; ``tensorboard``: a folder for TensorBoard
    event files (written on rank 0). ``validate(model)`` replaces the held-out score measured every
    ``eval_every`` steps (default: verification accuracy on the test pairs); ``on_log(row)`` sees each
    history row as it is logged (``tune`` prunes there).

    A diverging model (a NaN or inf loss, or NaN embeddings met by a miner or by the scoring) marks
    the method failed with the reason; the comparison goes on."""
    dim = method.embedding_dim or config.backbone.embedding_dim
    train_cfg = method_batch(config, method)
    if train_cfg.epochs:  # a budget in epochs: the steps grow with this method's training set
        train_cfg = dataclasses.replace(train_cfg, steps=epoch_steps(train_cfg.epochs, len(train_set),
                                                                     train_cfg.p * train_cfg.k))
    # Same seed -> same backbone initialisation for every method; the loss's weights come after.
    torch.manual_seed(seed)
    model = build_backbone(config.backbone, image_size=config.data.size, embedding_dim=dim)
    loss = build_loss(method, num_classes=train_set.num_identities, embedding_dim=dim, class_counts=class_counts(train_set),
                      ctx=ctx)
    row = ResultRow(method.name, method.group or method.name, seed, method.loss, loss.family, setup={
        "params": params_text(method), "label_noise": method.label_noise, "embedding_dim": dim, "p": train_cfg.p,
        "k": train_cfg.k, "train_identities": train_set.num_identities, "precision": train_cfg.precision})
    bar = _ProgressBar(method.name, seed, train_cfg, enabled=progress and ctx.is_main)
    held_out = (lambda: validate(model)) if validate is not None else (
        lambda: validation_accuracy(model, test_set.images, protocol.pairs, device=device, precision=train_cfg.precision))
    board = tensorboard_log.TensorBoardLog(tensorboard) if tensorboard is not None and ctx.is_main else None
    logs = [f for f in (board.history_row if board is not None else None, on_log) if f is not None]
    tic = time.perf_counter()
    try:
        result = train(model, loss, train_set, train_cfg, seed=seed, device=device, checkpoint=checkpoint,
                       resume=resume, on_step=bar.on_step, ctx=ctx, workers=config.data.workers,
                       validate=held_out if ctx.is_main else None,
                       log=(lambda row: [f(row) for f in logs]) if logs else None)
        # Under torchrun each rank embeds its share of the test set and searches its share of the
        # references; every rank then holds the same scores, and rank 0 records them.
        embeddings = distributed.gather_rows(embed(model, test_set.images[distributed.share(len(test_set), ctx)],
                                                   device=device, precision=train_cfg.precision), ctx)
        if not torch.isfinite(embeddings).all():
            raise TrainingDiverged("the model produces NaN or inf embeddings")
        search = distributed.knn_over_ranks(ctx, _faiss_device(device)) if ctx.active else evaluations.knn
        metrics, curves = score(embeddings, protocol, search=search)
        if ctx.is_main:
            metrics |= score_benchmarks(benchmarks, lambda images: embed(model, images, device=device,
                                                                         precision=train_cfg.precision))
    except TrainingDiverged as err:
        bar.close()
        if board is not None:
            board.close()
        print(f"{method.name} (seed {seed}) failed: {err}; the other methods go on", file=sys.stderr)
        return MethodResult(dataclasses.replace(row, status="failed", message=str(err),
                                                train_seconds=time.perf_counter() - tic))
    bar.close()
    if not ctx.is_main:
        return MethodResult(row)
    curves["embeddings"] = embeddings[projection_sample(protocol.labels)].numpy()
    # Inputs of the report's quality section (report/quality.py): every test image's feature norm; with
    # ground-truth quality (synthfaces) also the degradation, embeddings and labels, for all-pairs ERCs.
    curves["feature_norms"] = embeddings.norm(dim=1).numpy()
    if config.data.quality and test_set.quality is not None:
        curves |= {"test_degradation": test_set.quality["degradation"].numpy(), "test_labels": protocol.labels.numpy(),
                   "test_embeddings": embeddings.numpy()}
    if board is not None:
        board.test_scores(metrics)
        board.projector(embeddings[projection_sample(protocol.labels)], protocol.labels[projection_sample(protocol.labels)])
        board.close()
    curves |= angle_histograms(model, loss, train_set, device)
    return MethodResult(dataclasses.replace(row, metrics=metrics, train_seconds=result.seconds,
                                            images_per_s=result.images_per_s, steps=result.steps),
                        curves, [{"method": method.name, "seed": seed} | h for h in result.history], model)


class _ProgressBar:
    """A tqdm bar over training images (rate and ETA), advanced on the trainer's logged steps."""

    def __init__(self, method: str, seed: int, cfg: TrainConfig, *, enabled: bool) -> None:
        self.batch, self.steps, self.shown = cfg.p * cfg.k, cfg.steps, 0
        self.bar = tqdm(total=cfg.steps * self.batch, unit="img", unit_scale=True, desc=f"{method} s{seed}",
                        disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=True)

    def on_step(self, steps_done: int, value: float) -> None:
        self.bar.update((steps_done - self.shown) * self.batch)
        self.shown = steps_done
        self.bar.set_postfix(step=f"{steps_done}/{self.steps}", loss=f"{value:.3f}")

    def close(self) -> None:
        self.bar.close()


def _faiss_device(device: torch.device) -> str:
    """The faiss device of a torchrun rank: its own GPU when faiss sees it, else the CPU."""
    import faiss

    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > (device.index or 0):
        return f"cuda:{device.index or 0}"
    return "cpu"


ANGLE_BINS = np.linspace(0.0, 180.0, 91)  # degrees, 2-degree bins; saved with each histogram as theta_bins


@torch.no_grad()
def angle_histograms(model: torch.nn.Module, loss: losses.Loss, train_set: FaceData, device: torch.device,
                     *, images: int = 1000) -> dict[str, np.ndarray]:
    """Histograms of the angles between training embeddings and their own class centre (target) and
    the other class centres (non-target), as in the ArcFace paper's figures, with their bin edges;
    empty for a loss without class centres (:meth:`Loss.angle_cosines` is None)."""
    pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))[:images]
    emb = embed(model, train_set.images[pick], device=device).to(device)
    cos = loss.angle_cosines(emb)
    if cos is None or cos.shape != (len(pick), train_set.num_identities):
        return {}
    theta = torch.rad2deg(torch.acos(cos.float().clamp(-1, 1))).cpu()
    target = torch.zeros_like(theta, dtype=torch.bool)
    target[torch.arange(len(pick)), train_set.labels[pick]] = True
    return {"theta_target_hist": np.histogram(theta[target].numpy(), ANGLE_BINS)[0],
            "theta_other_hist": np.histogram(theta[~target].numpy(), ANGLE_BINS)[0], "theta_bins": ANGLE_BINS}


def projection_sample(labels: torch.Tensor, identities: int = 8) -> torch.Tensor:
    """Test images of the first ``identities`` identities: kept per method for the report's 2-D view."""
    return torch.nonzero(labels < identities).squeeze(1)


def params_text(method: MethodConfig) -> str:
    """A method's setting as results.csv's params column shows it: its loss parameters, its own train keys,
    the swept fields it sets and its miner (the tuned rows add the tuned train keys, tune.tuning.setting_text)."""
    parts = [f"{k}={v}" for k, v in method.params.items()]
    parts += [f"{k}={v}" for k, v in method.train.items()]
    parts += [f"{k}={getattr(method, k)}" for k in ("label_noise", "embedding_dim", "p", "k") if getattr(method, k)]
    if method.miner:
        inner = ",".join(f"{k}={v}" for k, v in method.miner_params.items())
        parts.append(f"miner={method.miner}" + (f"({inner})" if inner else ""))
    return " ".join(parts)
