import math

import pytest
import torch

from mlcompare import losses
from mlcompare.backbones import ResNetFace, embed
from mlcompare.config.comparison import TrainConfig
from mlcompare.data.facedata import FaceData
from mlcompare.train.trainer import TrainingDiverged, lr_factor, train


def tiny_data() -> FaceData:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(6)
    base = torch.randint(0, 255, (8, 3, 16, 16), generator=g)
    noise = torch.randint(-30, 30, (48, 3, 16, 16), generator=g)
    images = (base[labels] + noise).clamp(0, 255).to(torch.uint8)
    return FaceData(images, labels, [str(i) for i in range(8)], "tiny")


CFG = TrainConfig(steps=6, p=4, k=3, lr=1e-2, warmup_steps=2, log_every=1, checkpoint_every=3)


def run(loss_name: str, seed: int = 0, steps: int = 6, checkpoint=None, resume=False, miner: tuple | None = None,
        **params):
    torch.manual_seed(seed)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    if miner is not None:  # (name, params): a fresh miner per run, as the runner builds one per method
        params["miner"] = losses.build_miner(*miner, embedding_dim=16)
    loss = losses.get(loss_name, num_classes=8, embedding_dim=16, **params)
    cfg = TrainConfig(**{**CFG.__dict__, "steps": steps})
    result = train(model, loss, tiny_data(), cfg, seed=seed, device=torch.device("cpu"),
                   checkpoint=checkpoint, resume=resume)
    return model, result


@pytest.mark.parametrize("loss_name", ["softmax", "triplet"])
def test_same_seed_gives_identical_results(loss_name):
    m1, r1 = run(loss_name)
    m2, r2 = run(loss_name)
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    _, r3 = run(loss_name, seed=1)
    assert [h["loss"] for h in r3.history] != [h["loss"] for h in r1.history]


def test_same_seed_same_initial_backbone_for_every_loss():
    torch.manual_seed(3)
    a = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    torch.manual_seed(3)
    b = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# Stateful parts must be in the checkpoint: a memory bank's contents, a seeded miner's generator.
RESUMABLE = {"cosface": ("cosface", None),
             "triplet-memory-bank": ("triplet", ("memory_bank", {"size": 30, "rule": "hardest"})),
             "triplet-random-seeded": ("triplet", ("random", {"seed": 5}))}


@pytest.mark.parametrize("method", sorted(RESUMABLE))
def test_resume_continues_exactly(tmp_path, method):
    loss_name, miner = RESUMABLE[method]
    full_model, full = run(loss_name, miner=miner)
    ckpt = tmp_path / "c.pt"
    run(loss_name, steps=6, checkpoint=ckpt, miner=miner)  # writes checkpoints at steps 3 and 6
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 6
    # Interrupt after step 3: train 3 steps of a 6-step schedule, then resume.
    ckpt2 = tmp_path / "d.pt"
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get(loss_name, num_classes=8, embedding_dim=16,
                      **({"miner": losses.build_miner(*miner, embedding_dim=16)} if miner else {}))

    class Stop(Exception):
        pass

    def stop_after_3(step, value):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        train(model, loss, tiny_data(), CFG, seed=0, device=torch.device("cpu"), checkpoint=ckpt2, on_step=stop_after_3)
    assert torch.load(ckpt2, weights_only=False)["step"] == 3
    resumed_model, resumed = run(loss_name, checkpoint=ckpt2, resume=True, miner=miner)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)


def test_nan_loss_stops_with_a_clear_message():
    with pytest.raises(TrainingDiverged, match="loss became nan at step 0"):
        _nan_run()


def _nan_run():
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get("softmax", num_classes=8, embedding_dim=16)
    with torch.no_grad():
        loss.weight.fill_(float("nan"))
    train(model, loss, tiny_data(), CFG, seed=0, device=torch.device("cpu"))


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, warmup=4, total=20) == 0.25
    assert lr_factor(3, warmup=4, total=20) == 1.0
    assert math.isclose(lr_factor(12, warmup=4, total=20), 0.5)
    assert lr_factor(20, warmup=4, total=20) == 0.0


def test_embed_is_eval_mode_and_batched():
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16, dropout=0.5)
    images = tiny_data().images
    a = embed(model, images, device=torch.device("cpu"), batch_size=7)
    b = embed(model, images, device=torch.device("cpu"), batch_size=48)
    assert a.shape == (48, 16) and torch.allclose(a, b, atol=1e-5)
    assert model.training


def test_validation_runs_every_eval_every_steps_and_changes_nothing_else():
    calls = []
    cfg = TrainConfig(**{**CFG.__dict__, "log_every": 4, "eval_every": 2})

    def fit(validate):
        torch.manual_seed(0)
        model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16, dropout=0.3)
        loss = losses.get("arcface", num_classes=8, embedding_dim=16)
        return train(model, loss, tiny_data(), cfg, seed=0, device=torch.device("cpu"), validate=validate)

    def validate():
        calls.append(1)
        return 0.5 + len(calls)

    with_val = fit(validate)
    without = fit(None)
    assert [h["step"] for h in with_val.history if "val_accuracy" in h] == [1, 3, 5]
    assert [h["val_accuracy"] for h in with_val.history if "val_accuracy" in h] == [1.5, 2.5, 3.5]
    # validation is an extra logged step, never a different training trajectory
    by_step = {h["step"]: h["loss"] for h in without.history}
    assert all(by_step[h["step"]] == h["loss"] for h in with_val.history if h["step"] in by_step)


def test_nan_embeddings_met_by_a_miner_mark_the_method_diverged():
    # A diverged backbone gives NaN embeddings: the miner meets them before any loss value does.
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    with torch.no_grad():
        model.head[3].weight.fill_(float("nan"))
    loss = losses.get("triplet", num_classes=8, embedding_dim=16, miner=losses.build_miner("batch_hard", {}, embedding_dim=16))
    with pytest.raises(TrainingDiverged, match="embeddings contain NaN or infinite values; check the model output at step 0"):
        train(model, loss, tiny_data(), CFG, seed=0, device=torch.device("cpu"))
