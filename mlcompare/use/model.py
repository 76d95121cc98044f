"""A trained model back from its run directory: the backbone config.json describes, with a checkpoint's weights.

What ``mlcompare eval``, ``embed`` and ``export`` start from; each then does its own work with it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from mlcompare.backbones import build_backbone
from mlcompare.config.comparison import BackboneConfig
from mlcompare.errors import UserError
from mlcompare.files.checkpoints import load_checkpoint
from mlcompare.run.rundir import checkpoint_path


def load_model(run_dir: Path, method: str, *, seed: int = 0, fold: int = 0) -> tuple[torch.nn.Module, int]:
    """The backbone of ``method`` (seed ``seed``; cross-validation fold ``fold``, 0 for a run without
    folds) from a run directory, and its input size.

    The backbone is the one config.json's ``backbone`` section names (``resnet-face`` for runs written
    before backbones had names), at the method's own embedding size where it set one.

    The checkpoint is read with :func:`~mlcompare.files.checkpoints.load_checkpoint` (no code in it runs);
    a run directory whose config.json and checkpoint do not fit together is a one-line
    :class:`~mlcompare.errors.UserError`, as is a missing or unreadable config.json.
    """
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise UserError(f"'{run_dir}' holds no config.json: not a run directory")
    checkpoint = checkpoint_path(run_dir, method, seed, fold)
    if not checkpoint.exists():
        stems = sorted({p.stem.rsplit("-s", 1)[0] for p in (run_dir / "checkpoints").glob("*.pt")})
        folds = sorted({int(m.rsplit("-f", 1)[1]) for m in stems if m.rsplit("-f", 1)[-1].isdigit()})
        methods = sorted({m.rsplit("-f", 1)[0] for m in stems}) if folds else stems
        hint = f"; a cross-validated run: give --fold, one of {', '.join(map(str, folds))}" if folds and not fold else ""
        raise UserError(f"no checkpoint for method '{method}' seed {seed}{f' fold {fold}' if fold else ''} in {run_dir}; "
                        f"methods there: {', '.join(methods) or 'none'}{hint}")
    try:
        config = json.loads(config_path.read_text())
        b, size = config["backbone"], config["data"]["size"]
        fields = {f.name for f in dataclasses.fields(BackboneConfig)}
        # The checkpoint holds the weights: a pretrained file named in the config is not read again.
        backbone = BackboneConfig(**{k: v for k, v in b.items() if k in fields} | {"pretrained": ""})
        dims = [m.get("embedding_dim", 0) for m in config.get("methods", []) if m.get("name") == method]
        model = build_backbone(backbone, image_size=size, embedding_dim=(dims[0] if dims else 0) or backbone.embedding_dim)
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError; so are ResNetFace's size checks
        raise UserError(f"{config_path} is not the config.json of an mlcompare run ({type(err).__name__}: {err}); "
                        "give the run directory that `mlcompare run` wrote") from err
    state = load_checkpoint(checkpoint, map_location="cpu")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # load_state_dict lists every mismatched key on its own line
        raise UserError(f"checkpoint {checkpoint} does not fit the backbone in {config_path} "
                        f"({str(err).strip().splitlines()[0]}); was the config.json edited or copied from another run?") from err
    return model, size
