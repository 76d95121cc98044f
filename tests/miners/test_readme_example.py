"""The README's pytorch-metric-learning example runs as written."""
from __future__ import annotations

import re
from pathlib import Path

import torch


def test_readme_example_runs() -> None:
    text = Path(__file__).resolve().parents[2].joinpath("miners", "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "miners/README.md has no python example"
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(blocks[0], "miners/README.md", "exec"), scope)
    assert scope["loss"].ndim == 0 and torch.isfinite(scope["loss"])
    assert scope["embeddings"].grad is not None
    # the miner gave FaceNet triplets: one per anchor-positive pair
    a, p, n = scope["miner"](scope["embeddings"], scope["labels"])
    labels = scope["labels"]
    assert len(a) == int(((labels[:, None] == labels[None]).sum() - len(labels)).item())
