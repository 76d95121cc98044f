"""``pml:`` methods: every pytorch-metric-learning loss of the mlrc comparison trains through our trainer,
then gives the library's own value on the same embeddings, labels and weights; its own parameters get
gradients and survive a checkpoint; miners cross between the libraries; bad input is one line."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses, miners as pml_miners

from mlcompare import losses
from mlcompare.backbones import ResNetFace
from mlcompare.config import comparison as config
from mlcompare.config.comparison import TrainConfig
from mlcompare.errors import UserError
from mlcompare.files.checkpoints import load_checkpoint
from mlcompare.train.trainer import train
from tests.trainer.test_trainer import tiny_data

CFG = TrainConfig(steps=1, p=4, k=3, lr=1e-3, loss_lr=1e-2, warmup_steps=0, log_every=1, checkpoint_every=1)
MLRC = [m for m in config.load("mlrc").methods if m.loss.startswith("pml:")]


def _miner(method):
    return losses.build_miner(method.miner, method.miner_params, embedding_dim=16) if method.miner else None


@pytest.mark.parametrize("method", MLRC, ids=[m.name for m in MLRC])
def test_mlrc_pml_losses_train_and_match_the_library(tmp_path, method):
    data = tiny_data()
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get(method.loss, num_classes=data.num_identities, embedding_dim=16, miner=_miner(method), **method.params)
    before = {k: v.clone() for k, v in loss.state_dict().items() if isinstance(v, torch.Tensor)}
    ckpt = tmp_path / "c.pt"
    result = train(model, loss, data, CFG, seed=0, device=torch.device("cpu"), checkpoint=ckpt)
    assert result.steps == 1 and torch.isfinite(torch.tensor(result.history[0]["loss"]))
    own = loss.head_parameters()
    if loss.family == "proxy":  # proxies are the loss's own parameters, trained by the step
        assert own and any(not torch.equal(before[k], v) for k, v in loss.state_dict().items() if k in before)

    # the library's value on the same embeddings, labels and weights
    cls = getattr(pml_losses, method.loss.removeprefix("pml:"))
    sizes = {"num_classes": data.num_identities, "embedding_size": 16} if loss.family == "proxy" else {}
    reference = cls(**sizes, **method.params)
    reference.load_state_dict(loss.inner.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 16, generator=g, requires_grad=True)
    y = torch.arange(4).repeat_interleave(3)
    ours = loss(x, y)
    mined = pml_miners.MultiSimilarityMiner()(x, y) if method.miner else None
    assert torch.allclose(ours, reference(x, y, mined), rtol=1e-6, atol=1e-7)
    ours.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)

    # the checkpoint holds them: a fresh loss loaded from it computes the same value
    fresh = losses.get(method.loss, num_classes=data.num_identities, embedding_dim=16, miner=_miner(method),
                       **method.params)
    fresh.load_state_dict(load_checkpoint(ckpt, map_location="cpu")["loss"])
    for (k, a), b in zip(loss.state_dict().items(), fresh.state_dict().values()):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), k
    assert torch.equal(fresh(x, y), ours.detach())


def test_proxies_are_trained_at_loss_lr():
    loss = losses.get("pml:ProxyAnchorLoss", num_classes=8, embedding_dim=16)
    from mlcompare.train.trainer import make_optimizer

    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], loss.head_parameters(), CFG)
    assert [g["lr"] for g in opt.param_groups] == [CFG.lr, CFG.loss_lr]
    assert opt.param_groups[1]["params"][0] is loss.inner.proxies


def test_our_miner_feeds_a_pml_loss_and_a_pml_miner_feeds_ours():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 8, generator=g), torch.arange(4).repeat_interleave(3)
    ours_mined = losses.build_miner("batch_hard", {}, embedding_dim=8)
    pml_loss = losses.get("pml:TripletMarginLoss", num_classes=4, embedding_dim=8, miner=ours_mined, margin=0.1)
    assert torch.allclose(pml_loss(x, y), pml_losses.TripletMarginLoss(margin=0.1)(x, y, ours_mined(x, y)))
    pml_mined = losses.build_miner("pml:TripletMarginMiner", {"margin": 0.2}, embedding_dim=8)
    ours = losses.get("triplet", num_classes=4, embedding_dim=8, miner=pml_mined, margin=0.05)
    indices = pml_miners.TripletMarginMiner(margin=0.2)(x, y)
    assert indices[0].numel() > 0
    assert torch.allclose(ours(x, y), pml_losses.TripletMarginLoss(margin=0.05)(x, y, indices), atol=1e-6)


def test_sizes_reach_the_constructor_under_its_own_names():
    assert losses.get("pml:P2SGradLoss", num_classes=5, embedding_dim=7).inner.weight.shape == (7, 5)  # descriptors_dim
    assert losses.get("pml:ArcFaceLoss", num_classes=5, embedding_dim=7).inner.W.shape == (7, 5)
    soft = losses.get("pml:SoftTripleLoss", num_classes=5, embedding_dim=7, centers_per_class=2)
    assert soft.inner.fc.shape == (7, 10) and soft.angle_cosines(torch.randn(3, 7)).shape == (3, 5)
    assert losses.get("pml:NPairsLoss", num_classes=5, embedding_dim=7).angle_cosines(torch.randn(3, 7)) is None


def test_families_from_the_table_or_the_method():
    assert losses.family("pml:ProxyAnchorLoss") == "proxy"
    assert losses.family("pml:ArcFaceLoss") == "classification"
    assert losses.get("pml:PNPLoss", num_classes=4, embedding_dim=8, family="pair").family == "pair"
    with pytest.raises(ValueError, match='give its family in the method: family = "pair", "proxy" or "classification"'):
        losses.get("pml:PNPLoss", num_classes=4, embedding_dim=8)
    with pytest.raises(ValueError, match="is a 'proxy' loss"):
        losses.get("pml:ProxyAnchorLoss", num_classes=4, embedding_dim=8, family="pair")


@pytest.mark.parametrize("name, params, message", [
    ("pml:ArcFaceLoss", {"m": 0.5}, "loss 'pml:ArcFaceLoss' has no parameter 'm'; valid parameters: margin, scale"),
    ("pml:NoSuchLoss", {}, "pytorch-metric-learning has no loss 'NoSuchLoss'"),
    ("pml:ProxyAnchorLoss", {"distance": "cosine"}, "no parameter 'distance'"),
])
def test_bad_names_and_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(ValueError, match=message) as err:
        losses.get(name, num_classes=4, embedding_dim=8, **params)
    assert "\n" not in str(err.value)


def test_a_pml_miner_with_a_bad_parameter_names_the_real_ones():
    with pytest.raises(ValueError, match="miner 'pml:MultiSimilarityMiner' has no parameter 'eps'; valid parameters: epsilon"):
        losses.build_miner("pml:MultiSimilarityMiner", {"eps": 0.1}, embedding_dim=8)


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text('description = "d"\n' + text)
    return str(path)


def test_comparison_files_accept_pml_names_and_ask_for_a_missing_family(tmp_path):
    cfg = config.load(_write(tmp_path, 'methods = [{ loss = "pml:ProxyAnchorLoss" }, '
                                       '{ loss = "pml:PNPLoss", family = "pair", miner = "pml:MultiSimilarityMiner" }]\n'))
    assert [m.loss for m in cfg.methods] == ["pml:ProxyAnchorLoss", "pml:PNPLoss"] and cfg.methods[1].family == "pair"
    with pytest.raises(UserError, match="method 'pml:PNPLoss': pml:PNPLoss is not in mlcompare's table"):
        config.load(_write(tmp_path, 'methods = [{ loss = "pml:PNPLoss" }]\n'))
    with pytest.raises(UserError, match="has no miner 'Hardest'"):
        config.load(_write(tmp_path, 'methods = [{ loss = "triplet", miner = "pml:Hardest" }]\n'))
    with pytest.raises(UserError, match="family is set only for pml: losses"):
        config.load(_write(tmp_path, 'methods = [{ loss = "triplet", family = "pair" }]\n'))


@pytest.mark.parametrize("class_name", sorted(losses.pml.KNOWN))
def test_every_known_class_builds_steps_and_declares_its_family(class_name):
    torch.manual_seed(0)
    loss = losses.get("pml:" + class_name, num_classes=4, embedding_dim=8)
    assert loss.family == losses.pml.KNOWN[class_name].family
    x = torch.randn(12, 8, requires_grad=True)
    y = torch.arange(4).repeat_interleave(3)
    value = loss(x, y)
    value.backward()
    assert torch.isfinite(value) and x.grad is not None and torch.isfinite(x.grad).all()
    cos = loss.angle_cosines(x.detach())
    assert (cos is None) == (loss.family == "pair") and (cos is None or cos.shape == (12, 4))
    assert bool(loss.head_parameters()) == (loss.family != "pair")
