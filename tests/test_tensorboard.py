"""TensorBoard event files hold the trainer's history rows, the test scores and the projector sample."""
import dataclasses

import pytest
import torch

from mlcompare import losses
from mlcompare import data as datasets
from mlcompare.backbones import ResNetFace
from mlcompare.config.comparison import TrainConfig
from mlcompare.train.trainer import train

pytest.importorskip("tensorboard", reason="tensorboard is not installed: --tensorboard needs mlcompare[tensorboard]")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from mlcompare.train.tensorboard_log import TensorBoardLog  # noqa: E402


def test_event_files_hold_the_history_the_trainer_returns(tmp_path):
    data = datasets.load("digits", size=16)
    cfg = dataclasses.replace(TrainConfig(), steps=6, p=4, k=4, warmup_steps=2, log_every=2, eval_every=3)
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get("arcface", num_classes=data.num_identities, embedding_dim=16)
    board = TensorBoardLog(tmp_path / "arcface-s0")
    result = train(model, loss, data, cfg, seed=0, device=torch.device("cpu"), validate=lambda: 0.75,
                   log=board.history_row)
    board.test_scores({"accuracy": 0.5, "rank_1": 0.25, "n_genuine": 10, "auc": float("nan")})
    board.projector(torch.randn(6, 16), torch.tensor([0, 0, 1, 1, 2, 2]))
    board.close()
    events = EventAccumulator(str(tmp_path / "arcface-s0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    history = result.history
    assert {"train/loss", "train/lr", "val/accuracy", "test/accuracy", "test/rank_1"} <= tags
    assert {f"train/{k}" for k in loss.stats} <= tags and "test/auc" not in tags  # NaN scores are left out
    loss_events = events.Scalars("train/loss")
    assert [e.step for e in loss_events] == [h["step"] for h in history]
    assert [e.value for e in loss_events] == pytest.approx([h["loss"] for h in history], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([h["lr"] for h in history], rel=1e-6)
    assert [e.step for e in events.Scalars("val/accuracy")] == [h["step"] for h in history if "val_accuracy" in h]
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(0.5)
    assert events.Scalars("test/accuracy")[0].step == history[-1]["step"]
    assert (tmp_path / "arcface-s0" / "projector_config.pbtxt").exists()


def test_missing_tensorboard_is_one_line_naming_the_extra(monkeypatch):
    import builtins

    from mlcompare.errors import UserError
    from mlcompare.train import tensorboard_log

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match=r"pip install mlcompare\[tensorboard\]"):
        tensorboard_log.check_available()
