"""``pretrained = "PATH"``: a backbone's weights from a local state-dict file, checked before use.

The file is read with ``torch.load(weights_only=True)`` (no code in it runs) and may be a plain
state dict (``torch.save(model.state_dict(), PATH)``, arcface_torch's ``backbone.pth``) or a
checkpoint of ``mlcompare run`` (its ``model`` entry). Nothing is ever downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mlcompare.errors import UserError
from mlcompare.files.checkpoints import load_weights_only

SHOWN = 3  # mismatches named in the one-line error


def read_pretrained(path: str | Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict at ``path``, once every key and shape fits ``model`` (which may be on the meta
    device: only shapes are compared); otherwise a one-line :class:`UserError` naming the first few."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"backbone.pretrained: '{path}' is not a file; give a local state dict "
                        "(torch.save(model.state_dict(), PATH)) - nothing is downloaded")
    state = load_weights_only(path, "cpu", what=f"backbone.pretrained: '{path}'",
                              use="give a local state dict (torch.save(model.state_dict(), PATH))")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint of `mlcompare run`
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"backbone.pretrained: '{path}' holds a {type(state).__name__}, not a state dict of tensors")
    want = model.state_dict()
    problems = [f"{k}: file {tuple(state[k].shape)} vs backbone {tuple(v.shape)}"
                for k, v in want.items() if k in state and state[k].shape != v.shape]
    problems += [f"{k}: missing from the file" for k in want if k not in state]
    problems += [f"{k}: not in the backbone" for k in state if k not in want]
    if problems:
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise UserError(f"backbone.pretrained: '{path}' does not fit the backbone: {'; '.join(problems[:SHOWN])}{more}; "
                        "check backbone.name, backbone.embedding_dim and data.size")
    return state
