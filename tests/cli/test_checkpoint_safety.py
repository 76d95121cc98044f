"""``mlcompare eval --checkpoint`` reads a user-given file without running code from it, and a
bad checkpoint (crafted, truncated, empty, not ours) or a bad benchmark file is one line, exit 2."""
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import miners
from mlcompare import losses
from mlcompare.backbones import ResNetFace
from mlcompare.cli import main
from mlcompare.config.comparison import TrainConfig
from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError
from mlcompare.files.checkpoints import load_checkpoint
from mlcompare.train.trainer import train

BACKBONE = {"widths": [8, 16], "blocks": [1, 1], "embedding_dim": 16, "dropout": 0.0}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory as `mlcompare run` leaves it, as far as `eval` reads it: config.json and
    one checkpoint (an untrained 16 px backbone)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"backbone": BACKBONE, "data": {"size": 16}}))
    model = ResNetFace(image_size=16, widths=(8, 16), blocks=(1, 1), embedding_dim=16)
    torch.save({"model": model.state_dict(), "step": 0, "history": []}, run / "checkpoints" / "softmax-s0.pt")
    return run


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mlcompare: error: ")
    return err[0]


def eval_args(run: Path) -> list[str]:
    return ["eval", "--checkpoint", str(run / "softmax"), "--data", "digits"]


class WritesAFile:
    """Unpickling this calls ``open(path, "w")``: the file appears if the loader runs code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


class RunsAShellCommand:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch '{self.path}'",)


@pytest.mark.parametrize("payload", [WritesAFile, RunsAShellCommand])
@pytest.mark.parametrize("form", ["torch.save", "pickle"])
def test_a_crafted_checkpoint_runs_nothing_and_is_one_line(payload, form, run_dir, tmp_path, capsys):
    marker = tmp_path / "marker"
    checkpoint = run_dir / "checkpoints" / "softmax-s0.pt"
    crafted = {"model": payload(marker)}
    if form == "torch.save":
        torch.save(crafted, checkpoint)
    else:
        checkpoint.write_bytes(pickle.dumps(crafted, protocol=2))
    assert main(eval_args(run_dir)) == 2
    assert not marker.exists()
    line = one_error_line(capsys)
    assert f"checkpoint {checkpoint}" in line and "not loading it" in line


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_a_damaged_checkpoint_is_one_line(damage, run_dir, capsys):
    checkpoint = run_dir / "checkpoints" / "softmax-s0.pt"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes({"truncated": whole[: len(whole) // 2], "empty": b"", "text": b"not a checkpoint\n"}[damage])
    assert main(eval_args(run_dir)) == 2
    assert f"checkpoint {checkpoint} is truncated or corrupt" in one_error_line(capsys)


def test_a_checkpoint_without_a_model_is_one_line(run_dir, capsys):
    torch.save([torch.zeros(2)], run_dir / "checkpoints" / "softmax-s0.pt")
    assert main(eval_args(run_dir)) == 2
    assert "holds a list without a 'model' entry" in one_error_line(capsys)


def test_a_checkpoint_that_does_not_fit_the_config_is_one_line(run_dir, capsys):
    (run_dir / "config.json").write_text(json.dumps({"backbone": BACKBONE | {"embedding_dim": 32}, "data": {"size": 16}}))
    assert main(eval_args(run_dir)) == 2
    assert "does not fit the backbone in" in one_error_line(capsys)


def test_a_broken_config_json_is_one_line(run_dir, capsys):
    (run_dir / "config.json").write_text("{not json")
    assert main(eval_args(run_dir)) == 2
    assert "is not the config.json of an mlcompare run" in one_error_line(capsys)


def test_eval_on_a_missing_bin_or_a_bad_pairs_file_is_one_line(run_dir, tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(run_dir / "softmax"), "--bin", str(tmp_path / "lfw.bin")]) == 2
    assert one_error_line(capsys) == f"mlcompare: error: --bin {tmp_path / 'lfw.bin'}: no such file"
    (tmp_path / "pairs.txt").write_text("not a header\n")
    assert main(["eval", "--checkpoint", str(run_dir / "softmax"), "--pairs", str(tmp_path / "pairs.txt"),
                 "--root", str(tmp_path)]) == 2
    assert one_error_line(capsys).startswith(f"mlcompare: error: --pairs {tmp_path / 'pairs.txt'}:1: expected a header")


def test_load_checkpoint_of_a_missing_file():
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(Path("/no/such/checkpoint.pt"), map_location="cpu")


def _tiny_data() -> FaceData:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(6)
    images = torch.randint(0, 255, (48, 3, 16, 16), generator=g, dtype=torch.uint8)
    return FaceData(images, labels, [str(i) for i in range(8)], "tiny")


@pytest.mark.parametrize("loss_name", sorted(losses.REGISTRY))
def test_every_loss_writes_a_checkpoint_the_safe_loader_reads(loss_name, tmp_path):
    # The allow-list guard: a checkpoint that starts holding a type outside torch's weights_only
    # list (a numpy scalar, a dataclass) fails here, not on a user's `eval` or `--resume`.
    params = {"miner": miners.get("memory_bank", embedding_dim=16)} if losses.family(loss_name) == "pair" else {}
    loss = losses.get(loss_name, num_classes=8, embedding_dim=16, class_counts=torch.full((8,), 6), **params)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    cfg = TrainConfig(steps=2, p=4, k=3, warmup_steps=1, log_every=1, checkpoint_every=1)
    checkpoint = tmp_path / "c.pt"
    train(model, loss, _tiny_data(), cfg, seed=0, device=torch.device("cpu"), checkpoint=checkpoint, validate=lambda: 0.5)
    state = load_checkpoint(checkpoint, map_location="cpu")
    assert state["step"] == 2 and len(state["history"]) == 2
    model.load_state_dict(state["model"])
