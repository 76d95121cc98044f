"""Comparison configs: TOML files, read strictly into dataclasses.

An unknown key is an error naming the file, the key and the valid keys: a misspelt option
must never be silently ignored.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcompare.errors import UserError

COMPARISONS = Path(__file__).parent / "comparisons"


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


@dataclass
class BackboneConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: list[int] = field(default_factory=lambda: [1, 2, 2, 1])
    embedding_dim: int = 128
    dropout: float = 0.0


@dataclass
class TrainConfig:
    steps: int = 1000
    p: int = 16
    k: int = 4
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_steps: int = 50
    grad_clip: float = 5.0
    log_every: int = 10
    eval_every: int = 0  # verification accuracy on the test pairs every N steps (0: only at the end)
    checkpoint_every: int = 200
    flip: bool = True
    precision: str = "fp32"  # fp32, bf16 or fp16: autocast of the backbone (the loss stays float32)
    compile: bool = False  # torch.compile the backbone's forward pass
    sync_batchnorm: bool = True  # under torchrun: BatchNorm statistics over the global batch, as in one process


@dataclass
class MethodConfig:
    """One method: a loss (+ miner). The optional overrides let a comparison sweep one factor
    (label noise, embedding size, batch shape) while everything else stays shared; ``group``
    names the base method that a sweep's variants belong to (for the sweep plot)."""

    name: str
    loss: str
    params: dict[str, Any] = field(default_factory=dict)
    miner: str = ""
    miner_params: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    label_noise: float = 0.0  # share of training labels replaced by another identity, seeded
    embedding_dim: int = 0  # 0: the backbone's
    p: int = 0  # 0: the train section's
    k: int = 0


@dataclass
class ComparisonConfig:
    name: str
    description: str
    question: str = ""
    seeds: int = 1
    sweep: str = ""  # a MethodConfig field the methods vary (label_noise, embedding_dim, p); plotted
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: list[MethodConfig] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table, got {type(table).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise UserError(f"{where}: unknown key '{unknown[0]}'; valid keys: {', '.join(names)}")
    missing = [n for n, f in names.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in table]
    if missing:
        raise UserError(f"{where}: missing key '{missing[0]}'")
    return cls(**table)


def from_dict(raw: dict[str, Any], where: str) -> ComparisonConfig:
    raw = dict(raw)
    sections = {"data": DataConfig, "backbone": BackboneConfig, "train": TrainConfig}
    for key, cls in sections.items():
        raw[key] = _build(cls, raw.get(key, {}), f"{where} [{key}]")
    raw["methods"] = [_build(MethodConfig, m, f"{where} [[methods]] #{i + 1}") for i, m in enumerate(raw.get("methods", []))]
    config = _build(ComparisonConfig, raw, where)
    validate(config, where)
    return config


def validate(config: ComparisonConfig, where: str) -> None:
    from mlcompare import losses
    import miners

    if not config.methods:
        raise UserError(f"{where}: no [[methods]]; a comparison needs at least one")
    names = [m.name for m in config.methods]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: method names must be unique, got {names}")
    for m in config.methods:
        if m.loss not in losses.REGISTRY:
            raise UserError(f"{where}: method '{m.name}': unknown loss '{m.loss}'; valid losses: {', '.join(sorted(losses.REGISTRY))}")
        if m.miner and m.miner not in miners.REGISTRY:
            raise UserError(f"{where}: method '{m.name}': unknown miner '{m.miner}'; valid miners: {', '.join(sorted(miners.REGISTRY))}")
    for m in config.methods:
        if not 0.0 <= m.label_noise < 1.0:
            raise UserError(f"{where}: method '{m.name}': label_noise must be in [0, 1), got {m.label_noise}")
        if m.embedding_dim < 0 or m.p < 0 or m.k < 0:
            raise UserError(f"{where}: method '{m.name}': embedding_dim, p and k must be >= 0 (0: shared value)")
    sweepable = ("label_noise", "embedding_dim", "p", "k")
    if config.sweep and config.sweep not in sweepable:
        raise UserError(f"{where}: sweep must be one of {', '.join(sweepable)}, got '{config.sweep}'")
    if config.seeds < 1:
        raise UserError(f"{where}: seeds must be >= 1, got {config.seeds}")
    if config.train.steps < 1:
        raise UserError(f"{where}: train.steps must be >= 1, got {config.train.steps}")
    if config.data.workers < 0:
        raise UserError(f"{where}: data.workers must be >= 0 (0: decode into memory), got {config.data.workers}")
    if config.train.optimizer not in ("adamw", "sgd"):
        raise UserError(f"{where}: train.optimizer must be 'adamw' or 'sgd', got '{config.train.optimizer}'")
    if config.train.precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"{where}: train.precision must be 'fp32', 'bf16' or 'fp16', got '{config.train.precision}'")
    if not isinstance(config.train.compile, bool):
        raise UserError(f"{where}: train.compile must be true or false, got {config.train.compile!r}")


def named() -> dict[str, Path]:
    """The comparisons shipped in the package, name -> TOML path."""
    return {p.stem: p for p in sorted(COMPARISONS.glob("*.toml"))}


def load(name_or_path: str) -> ComparisonConfig:
    """A named comparison (``quick``) or a TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        shipped = named()
        if name_or_path not in shipped:
            raise UserError(f"unknown comparison '{name_or_path}'; valid: {', '.join(shipped)} (or a FILE.toml)")
        path = shipped[name_or_path]
    if not path.is_file():
        raise UserError(f"comparison file '{path}' does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: invalid TOML: {err}") from err
    raw.setdefault("name", path.stem)
    return from_dict(raw, str(path))
