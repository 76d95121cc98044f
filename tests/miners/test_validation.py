"""Every miner rejects bad input with a one-line ValueError naming the problem."""
from __future__ import annotations

import pytest
import torch

import miners

GOOD_E = torch.randn(6, 4)
GOOD_L = torch.tensor([0, 0, 1, 1, 2, 2])
BAD = [
    (GOOD_E[0], GOOD_L, "2-D"),
    (GOOD_E.long(), GOOD_L, "float"),
    (GOOD_E, GOOD_L.float(), "integer"),
    (GOOD_E, GOOD_L[:5], "must match"),
    (GOOD_E, GOOD_L.view(2, 3), "1-D"),
    (torch.full((6, 4), float("nan")), GOOD_L, "NaN"),
    (GOOD_E, [0, 0, 1, 1, 2, 2], "torch.Tensor"),
]


def build(name: str):
    return miners.get(name, embedding_dim=4) if name == "memory_bank" else miners.get(name)


def build_all() -> list:
    return [build(name) for name in sorted(miners.REGISTRY)]


@pytest.mark.parametrize("emb,labels,words", BAD)
def test_bad_input(emb, labels, words: str) -> None:
    for miner in build_all():
        with pytest.raises(ValueError, match=words) as err:
            miner(emb, labels)
        assert "\n" not in str(err.value)


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match="valid miners: .*batch_hard"):
        miners.get("nope")
    with pytest.raises(ValueError, match="no parameter 'margn'"):
        miners.get("semihard", margn=0.1)


@pytest.mark.parametrize("name", sorted(miners.REGISTRY))
def test_returns_int64_on_input_device(name: str) -> None:
    out = build(name)(torch.randn(12, 4), torch.arange(12) % 3)
    assert len(out) in (3, 4) and out[0].numel() > 0
    indices = out[:2] if name == "memory_bank" else out  # the bank's miner returns negative embeddings
    for t in indices:
        assert t.dtype == torch.int64 and t.device == GOOD_E.device
