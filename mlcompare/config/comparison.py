"""Comparison configs: TOML files, read strictly into dataclasses.

A file may start with ``extends = "NAME"`` (a comparison in ``mlcompare/comparisons/`` by stem, or
``FILE.toml`` relative to the extending file): the base is read first and the file deep-merged over
it (tables key by key, arrays such as ``[[methods]]`` replaced whole). A ``[sweep]`` table expands
methods over the values of one field, so a comparison states each method once. ``--set KEY=VALUE``
edits the merged table before it is built, so a value from the command line meets the same checks
as one from a file.

Every value is checked against its field's type and range in one place (:data:`RULES`) before any
work starts; an unknown key is an error naming the file, the key and the valid keys: a misspelt
option must never be silently ignored.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import tomllib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcompare.config import limits, results_schema
from mlcompare.config import names as names_on_disk
from mlcompare.errors import UserError

COMPARISONS = Path(__file__).parents[1] / "comparisons"
BUDGETS = limits.BUDGETS  # multiples of a comparison's own steps
PRECISIONS = limits.PRECISIONS
SWEEPABLE = ("label_noise", "embedding_dim", "p", "k", "train_identities")  # MethodConfig fields; or params.NAME


@dataclass
class DataConfig:
    train: str = "synthfaces"
    test: str = ""  # empty: hold out identities of `train`
    test_fraction: float = 0.3
    size: int = 32
    verification_pairs: int = 3000
    split_seed: int = 0  # the protocol (split, pairs, gallery) is fixed across training seeds
    # 0: decode an image folder / RecordIO training set into memory once; N: leave it on disk and
    # decode each batch in N worker processes (sets larger than memory)
    workers: int = 0
    # save every test image's ground-truth quality (synthfaces) and embedding with each method's curves,
    # and add the quality sections to the report (all-pairs ERCs: minutes per method on 2 cores)
    quality: bool = False
    # how a photograph becomes size x size (mlcompare/data/framing.py), the same for training, test and
    # benchmark images; the defaults squash the whole image to the square
    crop: float = 0.0  # a centred square, this fraction of the shorter side; 0: no crop
    crop_box: list[int] = field(default_factory=list)  # [left, top, right, bottom] pixels; empty: none
    keep_aspect: bool = False  # resize the shorter side to size and centre-crop the longer, not squash


@dataclass
class BackboneConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: list[int] = field(default_factory=lambda: [1, 2, 2, 1])
    embedding_dim: int = 128
    dropout: float = 0.0
    name: str = "resnet-face"  # see `mlcompare backbones`: resnet-face, iresnet50, mobilefacenet, timm:NAME, ...
    pretrained: str = ""  # a local state-dict file to start from (nothing is downloaded); empty: random init


@dataclass
class TrainConfig:
    steps: int = 1000
    p: int = 16
    k: int = 4
    # > 0: the budget in epochs instead of steps, each method's steps = ceil(epochs x its training images /
    # (p x k)) (see epoch_steps), so that it grows with the data; a file or --set gives steps or epochs, not both
    epochs: float = 0.0
    optimizer: str = "adamw"
    lr: float = 1e-3
    loss_lr: float = 0.0  # learning rate of the loss's own parameters (class weights, proxies); 0: lr
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_steps: int = 50
    grad_clip: float = 5.0
    log_every: int = 10
    eval_every: int = 0  # verification accuracy on the test pairs every N steps (0: only at the end)
    checkpoint_every: int = 200
    flip: bool = True
    # train-time augmentation (mlcompare/data/augment.py), drawn per step from the seed like the flip,
    # so that every method sees the same batches; test images get none of it
    random_crop: list[float] = field(default_factory=list)  # [min, max] area share of a random resized crop
    color_jitter: float = 0.0  # brightness, contrast and saturation each scaled by a factor in [1 - j, 1 + j]
    precision: str = "fp32"  # fp32, bf16 or fp16: autocast of the backbone (the loss stays float32)
    compile: bool = False  # torch.compile the backbone's forward pass
    sync_batchnorm: bool = True  # under torchrun: BatchNorm statistics over the global batch, as in one process


@dataclass
class MethodConfig:
    """One method: a loss (+ miner). The optional overrides let a comparison sweep one factor
    (label noise, embedding size, batch shape) while everything else stays shared; ``group``
    names the base method that a sweep's variants belong to (for the sweep plot).

    In a file ``name`` may be left out: it is then the loss's name."""

    name: str
    loss: str
    params: dict[str, Any] = field(default_factory=dict)
    miner: str = ""
    miner_params: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    family: str = ""  # only for a pml: loss not in mlcompare.losses.pml.KNOWN: pair, proxy or classification
    label_noise: float = 0.0  # share of training labels replaced by another identity, seeded
    embedding_dim: int = 0  # 0: the backbone's
    p: int = 0  # 0: the train section's
    k: int = 0
    # N: train on a seeded subset of N of the training identities (the test set unchanged); 0: all
    train_identities: int = 0
    # `mlcompare tune`: narrow, widen, fix or add search dimensions (see mlcompare/config/search_space.py)
    search: dict[str, Any] = field(default_factory=dict)
    # this method's own values of [train] keys, e.g. a setting `mlcompare tune` chose: { lr = 5.3e-3 }
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class TuningConfig:
    """``[tuning]``: how ``mlcompare tune`` searches each method's setting (MLRC's protocol: the
    same trials, steps and identity-disjoint folds of the training identities for every method)."""

    trials: int = 8  # per method, the comparison's own setting first
    folds: int = 4  # identity-disjoint folds of the training identities; a trial trains on K-1
    objective: str = "map_at_r"  # a results.csv score on the held-out fold's identities
    prune: bool = False  # stop a trial whose first folds are below the median of completed ones
    ensemble: bool = False  # also score the best trial's K fold models, concatenated
    seed: int = 0  # of the fold split and the sampler
    startup_trials: int = 4  # TPE samples at random before it models the history
    # Multi-fidelity: "halving" (successive halving) or "hyperband" prunes a trial by the objective on
    # its held-out fold every eval_every steps, and each method's budget is trials x folds x steps
    # training steps (a pruned trial costs what it trained) instead of a number of trials.
    multifidelity: str = "off"
    eval_every: int = 0  # steps between the objective measurements that multifidelity prunes on
    heartbeat: int = 10  # seconds between a worker's signs of life; silent for 3 of them, its trial is rerun


@dataclass
class SweepConfig:
    """A ``[sweep]`` table: each method named in ``methods`` (default: all) becomes one row per value
    of ``key``, value-major (for each value, each method), after the methods that are not swept.

    ``key`` is a MethodConfig field (label_noise, embedding_dim, p, k) or ``params.NAME`` (a loss
    parameter). A row is named by ``name``, a template with ``{method}`` (the swept method's name)
    and ``{label}`` (``labels[i]``, default the value as written, ``0.1`` -> ``"0.1"``); its group is
    ``group``, default the swept method's group or name. ``keep = true`` keeps the swept methods
    themselves as rows too (the margins comparison keeps CosFace at its default margin)."""

    key: str
    values: list[Any]
    methods: list[str] = field(default_factory=list)
    name: str = ""  # empty: "{method}-FIELD{label}", FIELD the key's last part (p, embedding_dim, m)
    labels: list[str] = field(default_factory=list)
    group: str = ""
    keep: bool = False


@dataclass
class LoggingConfig:
    """``[logging]``: where training is shown besides history.csv and the report."""

    tensorboard: bool = False  # event files under RUN/tensorboard/METHOD-sSEED (pip install mlcompare[tensorboard])


@dataclass
class ReportConfig:
    """``[report]``: how the report reads the results."""

    # the score that names the best method (summary sentence, "vs best", row order); one of OBJECTIVES
    primary: str = "accuracy"


@dataclass
class BenchmarkConfig:
    """``[[benchmarks]]``: a verification benchmark with its own pairs, scored for every method and
    seed beside the held-out identities (mlcompare/run/benchmarks.py). Its images must come from people
    the models never trained on: the run refuses an overlap (same files or the same names) unless
    ``overlap_ok`` says it is accepted."""

    kind: str  # cfp (CFP's Protocol/), lfw (pairs.txt over an image root) or bin (insightface .bin)
    path: str  # cfp: the folder holding Protocol/ and Data/; lfw: pairs.txt; bin: the .bin file
    name: str = ""  # the results.csv column prefix; default cfp_ff / cfp_fp, lfw, or the .bin's stem
    protocol: str = ""  # cfp: FF (frontal-frontal) or FP (frontal-profile)
    root: str = ""  # lfw: the image folder (root/NAME/NAME_0001.jpg)
    overlap_ok: bool = False  # the comparison accepts benchmark people in the training set (stated in the report)


@dataclass
class CrossvalConfig:
    """``[crossval]``: train and test on one data set's people through a benchmark's identity-disjoint
    splits (CFP's ten): fold k trains on the people outside split k and tests on split k (its
    held-out identities and its benchmark pairs), reported as mean ± std over folds."""

    benchmark: str = ""  # the name of a [[benchmarks]] entry whose splits are the folds; empty: no cross-validation
    folds: list[int] = field(default_factory=list)  # which splits to run (e.g. [1, 2, 3]); empty: all


@dataclass
class ComparisonConfig:
    name: str
    description: str
    question: str = ""
    seeds: int = 1
    # the key the methods vary (a MethodConfig field, plotted by the report, or params.NAME, not plotted)
    sweep: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    crossval: CrossvalConfig = field(default_factory=CrossvalConfig)
    methods: list[MethodConfig] = field(default_factory=list)
    benchmarks: list[BenchmarkConfig] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {"data": DataConfig, "backbone": BackboneConfig, "train": TrainConfig,
                             "tuning": TuningConfig, "logging": LoggingConfig,
                             "report": ReportConfig, "crossval": CrossvalConfig}
MULTIFIDELITY = ("off", "halving", "hyperband")
# Scores a comparison can rank methods by (the tuning objective, the report's primary metric).
OBJECTIVES = results_schema.RANK_BY
BENCHMARK_KINDS = ("cfp", "lfw", "bin")


def _positive_ints(v: list[int]) -> bool:
    return len(v) > 0 and all(x >= 1 for x in v)


def _finite(v: float) -> bool:
    return math.isfinite(v)


# The one place a value's range is checked: dotted key -> (test, what the valid values are).
# Types come from the dataclass annotations; cross-field checks (widths vs blocks) are in validate().
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seeds": (lambda v: v >= 1, ">= 1"),
    "data.test_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "data.size": (lambda v: 16 <= v <= 224, "in 16..224 (pixels)"),
    "data.verification_pairs": (lambda v: v >= 2, ">= 2"),
    "data.split_seed": (lambda v: v >= 0, ">= 0"),
    "data.workers": (lambda v: v >= 0, ">= 0 (0: decode into memory)"),
    "data.crop": (lambda v: 0 <= v <= 1, "in (0, 1] (a fraction of the shorter side; 0: no crop)"),
    "data.crop_box": (lambda v: v == [] or (len(v) == 4 and 0 <= v[0] < v[2] and 0 <= v[1] < v[3]),
                      "[left, top, right, bottom] pixels with left < right and top < bottom (empty: none)"),
    "train.random_crop": (lambda v: v == [] or (len(v) == 2 and 0 < v[0] <= v[1] <= 1),
                          "[min, max] area shares with 0 < min <= max <= 1 (empty: none)"),
    "train.color_jitter": (lambda v: 0 <= v < 1, "in [0, 1) (0: none)"),
    "benchmarks.kind": (lambda v: v in BENCHMARK_KINDS, "one of " + ", ".join(BENCHMARK_KINDS)),
    "crossval.folds": (lambda v: all(x >= 1 for x in v), "a list of split numbers (1-based); empty: all"),
    "backbone.widths": (_positive_ints, "a non-empty list of positive integers"),
    "backbone.blocks": (_positive_ints, "a non-empty list of positive integers"),
    "backbone.embedding_dim": (lambda v: v >= 1, ">= 1"),
    "backbone.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.steps": (lambda v: v >= 1, ">= 1"),
    "train.epochs": (lambda v: _finite(v) and v >= 0, "finite and >= 0 (0: train.steps is the budget)"),
    "train.p": (lambda v: v >= 1, ">= 1 (identities per batch)"),
    "train.k": (lambda v: v >= 2, ">= 2 (images per identity in a batch)"),
    "train.optimizer": (lambda v: v in ("adamw", "sgd"), "'adamw' or 'sgd'"),
    "train.lr": (lambda v: _finite(v) and v > 0, "finite and > 0"),
    "train.loss_lr": (lambda v: _finite(v) and v >= 0, "finite and >= 0 (0: the same as lr)"),
    "train.weight_decay": (lambda v: _finite(v) and v >= 0, "finite and >= 0"),
    "train.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "train.grad_clip": (lambda v: _finite(v) and v >= 0, "finite and >= 0 (0: no clipping)"),
    "train.log_every": (lambda v: v >= 1, ">= 1"),
    "train.eval_every": (lambda v: v >= 0, ">= 0 (0: only at the end)"),
    "train.checkpoint_every": (lambda v: v >= 1, ">= 1"),
    "train.precision": (lambda v: v in PRECISIONS, ", ".join(f"'{p}'" for p in PRECISIONS[:-1]) + f" or '{PRECISIONS[-1]}'"),
    "tuning.trials": (lambda v: v >= 1, ">= 1"),
    "tuning.folds": (lambda v: v >= 2, ">= 2"),
    "tuning.objective": (lambda v: v in OBJECTIVES, "one of " + ", ".join(OBJECTIVES)),
    "report.primary": (lambda v: v in OBJECTIVES, "one of " + ", ".join(OBJECTIVES)),
    "tuning.seed": (lambda v: v >= 0, ">= 0"),
    "tuning.startup_trials": (lambda v: v >= 0, ">= 0"),
    "tuning.multifidelity": (lambda v: v in MULTIFIDELITY, "one of " + ", ".join(MULTIFIDELITY)),
    "tuning.eval_every": (lambda v: v >= 0, ">= 0"),
    "tuning.heartbeat": (lambda v: v >= 1, ">= 1 (seconds)"),
    "methods.train_identities": (lambda v: v == 0 or v >= 2, "0 (all) or >= 2"),
    "methods.label_noise": (limits.label_noise_ok, limits.LABEL_NOISE_TEXT),
    "methods.embedding_dim": (lambda v: v >= 0, ">= 0 (0: the backbone's)"),
    "methods.p": (lambda v: v >= 0, ">= 0 (0: the train section's)"),
    "methods.k": (lambda v: v == 0 or v >= 2, "0 (the train section's) or >= 2"),
    "sweep.values": (lambda v: len(v) > 0, "a non-empty list"),
}

def epoch_steps(epochs: float, images: int, batch: int) -> int:
    """Steps that show ``images`` training images ``epochs`` times in batches of ``batch`` (P x K), rounded up.

    >>> epoch_steps(3, 1000, 64), epoch_steps(0.1, 640, 64)
    (47, 1)
    """
    return max(1, math.ceil(round(epochs * images / batch, 9)))  # round: 0.1 x 640 / 64 is 1.0000000000000002


def _budget_key(train: dict[str, Any], where: str) -> dict[str, Any]:
    """A layer's [train] table (a file's own, or the --set edits) gives the budget as steps or as epochs."""
    if "steps" in train and "epochs" in train:
        raise UserError(f"{where}: train.steps and train.epochs both given; a budget is one or the other "
                        "(epochs: steps = ceil(epochs x training images / (p x k))), drop one")
    return train


def _with_defaults(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` preceded by the class's declared ``shown_params`` at their constructor defaults: the
    constructor is the one source of truth for a default (read, never restated)."""
    defaults = inspect.signature(cls.__init__).parameters
    return {name: given.get(name, defaults[name].default) for name in cls.shown_params} | given


# ----------------------------------------------------------------------------- typed building

def _typed(value: Any, hint: Any, label: str) -> Any:
    """``value`` as the annotation ``hint`` wants it (an int is accepted as a float), or a UserError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number"
        value = float(value) if ok else value
    elif hint is str:
        ok, want = isinstance(value, str), "a string"
    elif origin is list:
        item = args[0] if args else Any
        names = {int: "integers", str: "strings", float: "numbers"}
        kinds = (int, float) if item is float else item  # an integer is a number, as for a float field
        ok = isinstance(value, list) and (item is Any or all(
            isinstance(x, kinds) and not isinstance(x, bool) for x in value))
        want = f"a list of {names[item]}" if item in names else "a list"
        value = [float(x) for x in value] if ok and item is float else value
    elif origin is dict:
        ok, want = isinstance(value, dict), "a table"
    else:
        raise TypeError(f"config field {label}: unsupported annotation {hint!r}")
    if not ok:
        raise UserError(f"{label} must be {want}, got {value!r}")
    return value


def check_range(key: str, value: Any, label: str) -> None:
    """The range rule of dotted ``key`` (see :data:`RULES`), or nothing when it has none."""
    if key in RULES:
        test, want = RULES[key]
        if not test(value):
            raise UserError(f"{label} must be {want}, got {value!r}")


def _check_known(cls: type, table: dict[str, Any], where: str, also: tuple[str, ...] = ()) -> None:
    names = [f.name for f in dataclasses.fields(cls)] + list(also)
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise UserError(f"{where}: unknown key '{unknown[0]}'; valid keys: {', '.join(names)}")


def _build(cls: type, table: Any, *, where: str, section: str, label: str) -> Any:
    """``cls(**table)`` once every key is known, present where required, typed and in range.

    ``section`` names the rules (``train`` -> ``train.lr``), ``label`` prefixes the key in a message."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: {label.rstrip('. :') or 'the file'} must be a table, got {type(table).__name__}")
    _check_known(cls, table, f"{where} [{section}]" if section else where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and n not in table]
    if missing:
        raise UserError(f"{where}: {label}missing key '{missing[0]}'")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        if cls is ComparisonConfig and key in (*SECTIONS, "methods", "benchmarks"):
            values[key] = value  # built by from_dict
            continue
        values[key] = _typed(value, hints[key], f"{where}: {label}{key}")
        check_range(f"{section}.{key}" if section else key, values[key], f"{where}: {label}{key}")
    return cls(**values)


# ----------------------------------------------------------------------------- sweeps

def _expand_sweep(sweep: SweepConfig, methods: list[MethodConfig], where: str) -> list[MethodConfig]:
    """The methods with the swept ones replaced by (``keep``: followed by) one row per value."""
    _check_sweep_key(sweep.key, where)
    names = [m.name for m in methods]
    for name in sweep.methods:
        if name not in names:
            raise UserError(f"{where}: sweep.methods names '{name}', which is not a method; methods: {', '.join(names)}")
    swept = [m for m in methods if not sweep.methods or m.name in sweep.methods]
    if sweep.labels and len(sweep.labels) != len(sweep.values):
        raise UserError(f"{where}: sweep.labels has {len(sweep.labels)} entries for {len(sweep.values)} values; "
                        "give one label per value (or none)")
    labels = sweep.labels or [format(v, "g") if isinstance(v, float) else str(v) for v in sweep.values]
    template = sweep.name or "{method}-" + sweep.key.rpartition(".")[2] + "{label}"
    param = sweep.key.removeprefix("params.") if sweep.key.startswith("params.") else ""
    unset = MethodConfig(name="", loss="")
    for method in swept:
        # a value the sweep would overwrite is an error, never silently replaced
        stated = param in method.params if param else getattr(method, sweep.key) != getattr(unset, sweep.key)
        if stated:
            raise UserError(f"{where}: method '{method.name}' sets {sweep.key}, which the sweep varies; "
                            f"remove it from the method (or the method from sweep.methods)")
    hint = typing.get_type_hints(MethodConfig).get(sweep.key, Any)
    rows = [m for m in methods if sweep.keep or m not in swept]
    for value, label in zip(sweep.values, labels):
        for method in swept:
            try:
                name = template.format(method=method.name, label=label)
            except (KeyError, IndexError, ValueError) as err:
                raise UserError(f"{where}: sweep.name '{template}' is not a valid template ({err}); "
                                "use {method} and {label}") from err
            change: dict[str, Any] = {"name": name, "group": sweep.group or method.group or method.name}
            if param:
                change["params"] = method.params | {param: value}  # the loss checks it when it is built
            else:
                change[sweep.key] = _typed(value, hint, f"{where}: method '{name}': {sweep.key}")
                check_range(f"methods.{sweep.key}", change[sweep.key], f"{where}: method '{name}': {sweep.key}")
            rows.append(dataclasses.replace(method, **change))
    return rows


# ----------------------------------------------------------------------------- from a table

def from_dict(raw: dict[str, Any], where: str) -> ComparisonConfig:
    """Build and validate a comparison from its (merged) table; ``where`` names it in messages."""
    raw = dict(raw)
    if not isinstance(raw.get("methods", []), list):
        raise UserError(f"{where}: methods must be an array of tables ([[methods]]), got {type(raw['methods']).__name__}")
    methods = [_named(m, where, i) for i, m in enumerate(raw.get("methods", []))]
    raw["methods"] = [_build(MethodConfig, m, where=where, section="methods", label=f"method '{m['name']}': ")
                      for m in methods]
    if isinstance(raw.get("sweep"), dict):
        sweep = _build(SweepConfig, raw["sweep"], where=where, section="sweep", label="sweep.")
        raw["methods"], raw["sweep"] = _expand_sweep(sweep, raw["methods"], where), sweep.key
    if isinstance(raw.get("backbone"), dict) and raw["backbone"].get("pretrained") is True:
        raise UserError(f"{where}: backbone.pretrained = true would download weights, and nothing is downloaded "
                        "at run time: give a local state-dict file, pretrained = \"PATH\"")
    for key, cls in SECTIONS.items():
        raw[key] = _build(cls, raw.get(key, {}), where=where, section=key, label=f"{key}.")
    if not isinstance(raw.get("benchmarks", []), list):
        raise UserError(f"{where}: benchmarks must be an array of tables ([[benchmarks]]), got {type(raw['benchmarks']).__name__}")
    raw["benchmarks"] = [_benchmark(b, where, i) for i, b in enumerate(raw.get("benchmarks", []))]
    config = _build(ComparisonConfig, raw, where=where, section="", label="")
    validate(config, where)
    return _fill_params(config)


def _benchmark(table: Any, where: str, i: int) -> BenchmarkConfig:
    """One ``[[benchmarks]]`` entry, built and checked, its name filled in."""
    bench = _build(BenchmarkConfig, table, where=where, section="benchmarks", label=f"[[benchmarks]] #{i + 1}: ")
    if bench.kind == "cfp" and bench.protocol not in ("FF", "FP"):
        raise UserError(f"{where}: [[benchmarks]] #{i + 1}: a cfp benchmark needs protocol = \"FF\" (frontal-frontal) "
                        f"or \"FP\" (frontal-profile), got {bench.protocol!r}")
    if bench.kind != "cfp" and bench.protocol:
        raise UserError(f"{where}: [[benchmarks]] #{i + 1}: protocol is for cfp benchmarks; remove it")
    if bench.kind == "lfw" and not bench.root:
        raise UserError(f"{where}: [[benchmarks]] #{i + 1}: an lfw benchmark needs root = \"DIR\" (the image folder of pairs.txt)")
    default = {"cfp": f"cfp_{bench.protocol.lower()}", "lfw": "lfw", "bin": Path(bench.path).stem}[bench.kind]
    name = bench.name or default
    if not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"{where}: [[benchmarks]] #{i + 1}: name {name!r} must be letters, digits, '_' or '-' "
                        "(it prefixes results.csv columns)")
    return dataclasses.replace(bench, name=name)


def _named(method: Any, where: str, i: int) -> dict[str, Any]:
    if not isinstance(method, dict):
        raise UserError(f"{where}: [[methods]] #{i + 1} must be a table, got {type(method).__name__}")
    _check_known(MethodConfig, method, f"{where} [[methods]] #{i + 1}")
    if "loss" not in method:
        raise UserError(f"{where}: [[methods]] #{i + 1}: missing key 'loss'")
    return {"name": method["loss"]} | method


def _fill_params(config: ComparisonConfig) -> ComparisonConfig:
    from mlcompare import losses
    import miners

    methods = [dataclasses.replace(
        m, params=m.params if m.loss.startswith(losses.pml.PREFIX) else losses.with_shown(m.loss, m.params),
        miner_params=_with_defaults(miners.REGISTRY[m.miner], m.miner_params)
        if m.miner and not m.miner.startswith(losses.pml.PREFIX) else m.miner_params)
        for m in config.methods]
    return dataclasses.replace(config, methods=methods)


def validate(config: ComparisonConfig, where: str) -> None:
    """Checks across fields and against the registries (single values are checked as they are built)."""
    from mlcompare import losses
    import miners

    if not config.methods:
        raise UserError(f"{where}: no [[methods]]; a comparison needs at least one")
    names = [m.name for m in config.methods]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: method names must be unique, got {names}")
    names_on_disk.check_distinct([(names_on_disk.RAW_PIXELS, f"the baseline '{names_on_disk.RAW_PIXELS}'"),
                                  *((n, f"method '{n}'") for n in names)], where)  # untrusted names: see mlcompare.config.names
    for m in config.methods:
        pml_loss, pml_miner = m.loss.startswith(losses.pml.PREFIX), m.miner.startswith(losses.pml.PREFIX)
        if m.family and not pml_loss:
            raise UserError(f"{where}: method '{m.name}': family is set only for pml: losses (a registered loss declares its own); remove it")
        try:  # a pml: class must exist, and have a family (the table's or the method's own)
            if pml_loss:
                losses.family(m.loss, m.family)
            if pml_miner:
                losses.pml.miner_class(m.miner.removeprefix(losses.pml.PREFIX))
        except ValueError as err:
            raise UserError(f"{where}: method '{m.name}': {err}") from err
        if not pml_loss and m.loss not in losses.REGISTRY:
            raise UserError(f"{where}: method '{m.name}': unknown loss '{m.loss}'; valid losses: {', '.join(sorted(losses.REGISTRY))}")
        if m.miner and not pml_miner and m.miner not in miners.REGISTRY:
            raise UserError(f"{where}: method '{m.name}': unknown miner '{m.miner}'; valid miners: {', '.join(sorted(miners.REGISTRY))}")
    t = config.tuning
    if t.multifidelity != "off" and t.eval_every < 1:
        raise UserError(f"{where}: tuning.multifidelity = '{t.multifidelity}' prunes on the objective measured every "
                        f"tuning.eval_every steps; set it, e.g. --set tuning.eval_every={max(1, config.train.steps // 4)}")
    if t.multifidelity != "off" and t.prune:
        raise UserError(f"{where}: tuning.prune (median over folds) and tuning.multifidelity (within training) "
                        "are two pruners; set one")
    benchmarks = [bench.name for bench in config.benchmarks]
    if len(set(benchmarks)) != len(benchmarks):
        raise UserError(f"{where}: benchmark names must be unique, got {benchmarks}; give each a name")
    cv = config.crossval
    if cv.folds and not cv.benchmark:
        raise UserError(f"{where}: crossval.folds without crossval.benchmark; name the [[benchmarks]] entry whose splits are the folds")
    if cv.benchmark and cv.benchmark not in benchmarks:
        raise UserError(f"{where}: crossval.benchmark '{cv.benchmark}' is not a [[benchmarks]] name; names: {', '.join(benchmarks) or 'none'}")
    if config.data.crop and config.data.crop_box:
        raise UserError(f"{where}: data.crop (a centred square) and data.crop_box (a box) exclude each other; give one")
    for m in config.methods:
        _check_method_train(m, where)
    b = config.backbone
    if len(b.widths) != len(b.blocks):
        raise UserError(f"{where}: backbone.widths {b.widths} and backbone.blocks {b.blocks} must have the same "
                        "length (one entry per stage)")
    if config.sweep:
        _check_sweep_key(config.sweep, where)
    from mlcompare import backbones

    try:
        backbones.check_name(b.name)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None


METHOD_TRAIN_KEYS = ("lr", "loss_lr", "weight_decay", "momentum", "optimizer", "warmup_steps", "grad_clip")


def _check_method_train(method: MethodConfig, where: str) -> None:
    """A method's ``train`` table: keys of [train] a method may set for itself, typed and in range."""
    hints = typing.get_type_hints(TrainConfig)
    for key, value in method.train.items():
        label = f"{where}: method '{method.name}': train.{key}"
        if key not in METHOD_TRAIN_KEYS:
            raise UserError(f"{label}: a method may set only {', '.join(METHOD_TRAIN_KEYS)} of [train] for itself "
                            "(steps, batch shape and the rest are shared by every method)")
        method.train[key] = _typed(value, hints[key], label)
        check_range(f"train.{key}", method.train[key], label)


def _check_sweep_key(key: str, where: str) -> None:
    if key not in SWEEPABLE and not (key.startswith("params.") and len(key) > len("params.")):
        raise UserError(f"{where}: sweep must be one of {', '.join(SWEEPABLE)} or params.NAME, got '{key}'")


# ----------------------------------------------------------------------------- files and extends

def named() -> dict[str, Path]:
    """The comparisons shipped in the package, name -> TOML path. Files whose name starts with
    ``_`` are bases that others extend, not comparisons of their own, and are not listed."""
    return {p.stem: p for p in sorted(COMPARISONS.glob("*.toml")) if not p.stem.startswith("_")}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: tables merge key by key, recursively; anything else (arrays too) replaces.
    A budget in ``over`` (train.steps or train.epochs) replaces the base's, whichever key it used."""
    out = dict(base)
    budget = {"steps", "epochs"} & set(over.get("train", {}) if isinstance(over.get("train"), dict) else {})
    if budget and isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k not in {"steps", "epochs"} - budget}
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _parse(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"comparison file '{path}' does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: invalid TOML: {err}") from err


def _read(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The table of ``path`` merged over the bases it extends (its own keys checked against the schema)."""
    chain = chain + (path.resolve(),)
    raw = _parse(path)
    _check_known(ComparisonConfig, raw, str(path), also=("extends",))
    for key, cls in SECTIONS.items():
        if isinstance(raw.get(key), dict):
            _check_known(cls, raw[key], f"{path} [{key}]")
    if isinstance(raw.get("train"), dict):
        _budget_key(raw["train"], str(path))
    if isinstance(raw.get("sweep"), dict):
        _check_known(SweepConfig, raw["sweep"], f"{path} [sweep]")
    for i, method in enumerate(raw.get("methods", [])):
        if isinstance(method, dict):
            _check_known(MethodConfig, method, f"{path} [[methods]] #{i + 1}")
    if "extends" not in raw:
        return raw
    base = raw.pop("extends")
    if not isinstance(base, str):
        raise UserError(f"{path}: extends must be a string (a comparison name or FILE.toml), got {base!r}")
    if base.endswith(".toml"):
        base_path = path.parent / base
    else:
        base_path = COMPARISONS / f"{base}.toml"
        if not base_path.is_file():
            valid = sorted(p.stem for p in COMPARISONS.glob("*.toml"))
            raise UserError(f"{path}: extends '{base}': no such comparison; valid: {', '.join(valid)} "
                            f"(or FILE.toml relative to {path.parent})")
    if base_path.resolve() in chain:
        cycle = " -> ".join(p.name for p in chain + (base_path.resolve(),))
        raise UserError(f"{path}: extends makes a cycle ({cycle}); remove one of these extends")
    if not base_path.is_file():
        raise UserError(f"{path}: extends '{base}': file '{base_path}' does not exist")
    return _merge(_read(base_path, chain), raw)


def _locate(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return path
    shipped = named()
    if name_or_path not in shipped:
        raise UserError(f"unknown comparison '{name_or_path}'; valid: {', '.join(shipped)} (or a FILE.toml)")
    return shipped[name_or_path]


def load(name_or_path: str, *, sets: Sequence[str] = (), options: dict[str, Any] | None = None) -> ComparisonConfig:
    """A named comparison (``quick``) or a TOML file path, with ``--set KEY=VALUE`` edits ``sets``, then
    the command-line ``options`` of :func:`option_sets` (``--steps``, ``--data``, ...) as more of them."""
    path = _locate(name_or_path)
    raw = _read(path)
    raw.setdefault("name", path.stem)
    if sets:
        raw = apply_sets(raw, sets, where=str(path))
    if options:
        more = option_sets(raw, **options)
        raw, sets = apply_sets(raw, more, where=str(path)), [*sets, *more]
    return from_dict(raw, str(path) + (f" (with --set {' '.join(sets)})" if sets else ""))


# ----------------------------------------------------------------------------- --set

SET_EXAMPLES = "--set train.p=8 --set train.lr=1e-3 --set data.train=digits --set backbone.widths=[8,16]"


def valid_set_keys() -> list[str]:
    """Every key ``--set`` accepts, dotted as in the file."""
    top = [f.name for f in dataclasses.fields(ComparisonConfig) if f.name not in (*SECTIONS, "methods")]
    keys = top + [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
    keys += [f"sweep.{f.name}" for f in dataclasses.fields(SweepConfig)]
    keys += [f"methods.NAME.{f.name}" for f in dataclasses.fields(MethodConfig) if f.name != "name"]
    return keys + ["methods.NAME.params.PARAM", "methods.NAME.miner_params.PARAM"]


def _parse_value(text: str, annotation: Any) -> Any:
    # A string field takes the text as it is (``data.train=digits``, a description of digits);
    # anything else is read as a TOML value, and text that is none is a bare string.
    if annotation is str and not text.startswith(('"', "'")):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_sets(raw: dict[str, Any], sets: Sequence[str], *, where: str) -> dict[str, Any]:
    """``raw`` with each ``KEY=VALUE`` of ``sets`` applied (KEY dotted as in the file, see
    :func:`valid_set_keys`; a method by its name: ``methods.arcface.params.m=0.3``)."""
    raw = copy.deepcopy(raw)
    _budget_key({item.partition("=")[0].strip().removeprefix("train."): None for item in sets
                 if item.strip().startswith(("train.steps=", "train.epochs="))}, "--set")
    for item in sets:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"--set '{item}': expected KEY=VALUE, e.g. {SET_EXAMPLES}")
        parts = key.split(".")
        unknown = UserError(f"--set {key}: unknown key '{key}'; valid keys: {', '.join(valid_set_keys())}")
        hints = typing.get_type_hints(ComparisonConfig)
        if len(parts) == 1 and parts[0] in hints and parts[0] not in (*SECTIONS, "methods"):
            raw[parts[0]] = _parse_value(text, hints[parts[0]] if parts[0] != "sweep" else str)
        elif len(parts) == 2 and parts[0] in SECTIONS:
            section = typing.get_type_hints(SECTIONS[parts[0]])
            if parts[1] not in section:
                raise unknown
            table = raw.setdefault(parts[0], {})
            if not isinstance(table, dict):
                raise UserError(f"{where}: {parts[0]} must be a table, got {type(table).__name__}")
            if parts[0] == "train" and parts[1] in ("steps", "epochs"):  # the budget set here replaces the file's
                table.pop("epochs" if parts[1] == "steps" else "steps", None)
            table[parts[1]] = _parse_value(text, section[parts[1]])
        elif len(parts) == 2 and parts[0] == "sweep":
            sweep = typing.get_type_hints(SweepConfig)
            if parts[1] not in sweep:
                raise unknown
            table = raw.setdefault("sweep", {})
            if not isinstance(table, dict):
                raise UserError(f"--set {key}: this comparison's sweep is the plain string '{table}', not a [sweep] "
                                f"table; use --set sweep=FIELD")
            table[parts[1]] = _parse_value(text, sweep[parts[1]])
        elif len(parts) >= 3 and parts[0] == "methods":
            _set_method(raw, key, text, unknown=unknown, where=where)
        else:
            raise unknown
    return raw


def _set_method(raw: dict[str, Any], key: str, text: str, *, unknown: UserError, where: str) -> None:
    """``methods.NAME.FIELD`` or ``methods.NAME.params.PARAM`` (NAME may hold dots: cosface-m0.1)."""
    methods = [m for m in raw.get("methods", []) if isinstance(m, dict)]
    names = [m.get("name", m.get("loss")) for m in methods]  # a method's name defaults to its loss
    rest = key.removeprefix("methods.")
    found = [(m, n) for m, n in zip(methods, names) if isinstance(n, str) and rest.startswith(n + ".")]
    if not found:
        raise UserError(f"--set {key}: no method '{rest.split('.')[0]}' in {where}; methods: {', '.join(map(str, names))}")
    method, name = max(found, key=lambda pair: len(pair[1]))
    parts = rest.removeprefix(name + ".").split(".")
    hints = typing.get_type_hints(MethodConfig)
    if len(parts) == 1 and parts[0] in hints and parts[0] != "name":
        method[parts[0]] = _parse_value(text, hints[parts[0]])
    elif len(parts) == 2 and parts[0] in ("params", "miner_params"):
        table = method.setdefault(parts[0], {})
        if not isinstance(table, dict):
            raise UserError(f"{where}: method '{name}': {parts[0]} must be a table, got {table!r}")
        table[parts[1]] = _parse_value(text, Any)
    else:
        raise unknown


# ----------------------------------------------------------------------------- command-line options

def _toml(value: Any) -> str:
    """``value`` as the TOML text that ``--set`` reads back to it (strings quoted: a description may hold anything)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a JSON string is a TOML basic string once DEL, which TOML wants escaped, is
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)


def _current(raw: dict[str, Any], key: str) -> Any:
    """The value of dotted ``key`` in the table ``raw``, its field's default where the table has none
    (None for a required field the table lacks: building it says so)."""
    section, _, name = key.rpartition(".")
    cls = SECTIONS[section] if section else ComparisonConfig
    table = raw.get(section, {}) if section else raw
    if name in table:
        return table[name]
    field_ = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field_.default is not dataclasses.MISSING:
        return field_.default
    return None if field_.default_factory is dataclasses.MISSING else field_.default_factory()


def option_sets(raw: dict[str, Any], *, data: str | None = None, test_data: str | None = None,
                seeds: int | None = None, steps: int | None = None, budget: str | None = None,
                precision: str | None = None, compile: bool | None = None, workers: int | None = None,
                tensorboard: bool | None = None) -> list[str]:
    """The command-line options of ``run``/``tune`` as ``--set KEY=VALUE`` strings on the table ``raw``
    (a comparison's merged table after any ``--set``), to be applied by :func:`apply_sets` like any other.

    ``budget`` scales the budget key the comparison uses (steps, or epochs) and its warm-up: quick x1,
    standard x4, long x16; ``steps`` sets the steps outright (no epochs), wins over ``budget`` and lowers
    the warm-up to a tenth of them; ``data`` / ``test_data`` different from the comparison's own say so in
    its description. A value is checked here by the same :data:`RULES` as the file's, the message naming
    the option.
    """
    out: dict[str, Any] = {}
    warmup = _current(raw, "train.warmup_steps")
    if budget:
        if budget not in BUDGETS:
            raise UserError(f"--budget must be one of {', '.join(BUDGETS)}, got '{budget}'")
        x, epochs = BUDGETS[budget], _current(raw, "train.epochs")
        # scale the key the budget is given by (a --set of steps or epochs drops the other one)
        out |= {"train.epochs": epochs * x} if epochs else {"train.steps": _current(raw, "train.steps") * x}
        warmup = out["train.warmup_steps"] = warmup * x
    description = _current(raw, "description") or ""
    if data and data != _current(raw, "data.train"):
        description += f" [This run: trained on {data}, not the comparison's own {_current(raw, 'data.train')}.]"
        out["data.train"] = data
    if test_data and test_data != _current(raw, "data.test"):
        description += f" [This run: tested on {test_data}.]"
        out["data.test"] = test_data
    if description != _current(raw, "description") and isinstance(_current(raw, "description"), str):
        out["description"] = description
    for option, key, value in (("--seeds", "seeds", seeds), ("--steps", "train.steps", steps),
                               ("--precision", "train.precision", precision), ("--workers", "data.workers", workers)):
        if value is not None:
            check_range(key, value, option)
            out[key] = value
    if steps is not None:
        out.pop("train.epochs", None)
        out["train.warmup_steps"] = min(warmup, max(1, steps // 10))
    if compile is not None:
        out["train.compile"] = compile
    if tensorboard:
        out["logging.tensorboard"] = True
    return [f"{key}={_toml(value)}" for key, value in out.items()]


def apply_overrides(config: ComparisonConfig, **options: Any) -> ComparisonConfig:
    """``config`` with the command-line ``options`` of :func:`option_sets` applied through ``--set``
    to its table and built again, checked like the file (for callers holding a built config)."""
    raw = config.to_dict()
    sets = option_sets(raw, **options)
    return from_dict(apply_sets(raw, sets, where=config.name), f"{config.name} (with --set {' '.join(sets)})") if sets else config
