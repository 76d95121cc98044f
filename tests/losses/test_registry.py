"""Every registered loss, built from its defaults as a comparison would, takes one training step.

A new registry entry is covered here automatically; its declared interface (family, angle
cosines, head parameters, state for resuming) is checked against what the runner and trainer use.
"""
import pytest
import torch

from mlcompare import losses
from mlcompare.backbones import ResNetFace
from mlcompare.config.comparison import TrainConfig
from mlcompare.losses.base import FAMILIES
from mlcompare.train.trainer import train
from tests.trainer.test_trainer import tiny_data

CFG = TrainConfig(steps=2, p=4, k=3, lr=1e-3, warmup_steps=1, log_every=1, checkpoint_every=10)


@pytest.mark.parametrize("name", sorted(losses.REGISTRY))
def test_every_registered_loss_trains_one_step_from_its_defaults(name):
    data = tiny_data()
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    counts = torch.bincount(data.labels, minlength=data.num_identities)  # what the runner passes (class_counts)
    loss = losses.get(name, num_classes=data.num_identities, embedding_dim=16, class_counts=counts)
    assert loss.family in FAMILIES
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, loss, data, CFG, seed=0, device=torch.device("cpu"))
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "the backbone did not move"
    # declared interface: angle cosines are [N, C] or None; head parameters are the loss's own
    cos = loss.angle_cosines(torch.randn(5, 16))
    assert cos is None or cos.shape == (5, data.num_identities)
    own = {id(p) for p in loss.parameters()}
    assert all(id(p) in own for p in loss.head_parameters())
    assert (loss.family == "classification") == bool(loss.head_parameters()) or name in ("margin",)
    # state survives a round trip into a fresh loss (what --resume does)
    fresh = losses.get(name, num_classes=data.num_identities, embedding_dim=16, class_counts=counts)
    fresh.load_state_dict(loss.state_dict())
    for (k, a), b in zip(loss.state_dict().items(), fresh.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(ValueError, match="loss 'arcface' has no parameter 'margin'; valid parameters: s, m"):
        losses.get("arcface", num_classes=4, embedding_dim=8, margin=0.5)


def test_distributed_context_reaches_only_shardable_losses():
    sharded = losses.get("partial_fc", num_classes=10, embedding_dim=8, rank=1, world_size=2)
    assert sharded.sharded and sharded.weight.shape == (5, 8) and sharded.angle_cosines(torch.randn(3, 8)) is None
    plain = losses.get("arcface", num_classes=10, embedding_dim=8, rank=1, world_size=2)
    assert not plain.sharded and plain.weight.shape == (10, 8)


def test_a_classification_loss_refuses_a_miner():
    with pytest.raises(ValueError, match="takes no miner"):
        losses.get("arcface", num_classes=4, embedding_dim=8, miner=losses.build_miner("batch_hard", {}, embedding_dim=8))


def test_the_memory_bank_gets_the_methods_embedding_size():
    assert losses.build_miner("memory_bank", {"size": 16}, embedding_dim=24).embedding_dim == 24
    assert losses.build_miner("memory_bank", {"size": 16, "embedding_dim": 8}, embedding_dim=24).embedding_dim == 8
