"""Read a checkpoint without trusting it: ``torch.load(weights_only=True)`` and one-line errors.

A checkpoint path comes from the user (``mlcompare eval --checkpoint``, ``run --resume`` on a
directory someone sent them), and a full unpickle runs whatever code the file names. Our
checkpoints (see :func:`mlcompare.train.trainer.train`'s ``save``) hold only state dicts of the model,
loss, optimiser, schedule and scaler, a history list of dicts of floats, RNG state tensors and
numbers: all of it inside torch's own ``weights_only`` allow-list (tensors, dicts, lists, tuples,
strings, numbers, None). So nothing is added to that list; ``tests/cli/test_checkpoint_safety.py``
trains every loss and loads its checkpoint here, which fails if a checkpoint ever starts holding
something else (a numpy scalar, a dataclass): allow that type here, by name, rather than
loading with ``weights_only=False``.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mlcompare.errors import UserError


def load_checkpoint(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """The checkpoint dict at ``path``, its tensors on ``map_location``.

    Raises :class:`~mlcompare.errors.UserError` (one line) for a missing file, a file that names
    code or classes outside the allow-list (nothing of it runs), and a truncated or corrupt file.
    """
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (or is not a file); give RUN_DIR/METHOD of a finished run")
    state = load_weights_only(path, map_location, what=f"checkpoint {path}",
                              use="restore it, or use a checkpoint written by `mlcompare run`")
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} holds a {type(state).__name__} without a 'model' entry: "
                        "not a checkpoint written by `mlcompare run`")
    return state


def load_weights_only(path: Path, map_location: str | torch.device, *, what: str, use: str) -> Any:
    """``torch.load(path, weights_only=True)``, or one :class:`UserError` line starting with ``what``
    (``checkpoint PATH``) and ending with ``use`` (what file to give instead): any file a user names
    (a checkpoint, ``backbone.pretrained``) is read here."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch.load's zip and pickle readers raise whatever they hit on arbitrary bytes
        # The weights-only unpickler refuses a global outside the allow-list by name, before calling anything.
        refused = re.search(r"GLOBAL (\S+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if refused:
            raise UserError(f"{what} names '{refused.group(1)}', which no mlcompare checkpoint holds; "
                            f"not loading it (it could run code): {use}") from err
        if isinstance(err, pickle.UnpicklingError):  # torch's message is a paragraph on weights_only: not for one line
            detail = "a pickle that a weights-only load refuses"
        else:
            detail = f"{type(err).__name__}: {(str(err).strip().splitlines() or ['no detail'])[0][:200]}"
        raise UserError(f"{what} is truncated or corrupt ({detail}); {use}") from err
