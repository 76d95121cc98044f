"""Mixed precision: every loss against float32 on the same inputs, the trainer's bf16 path, the
CLI's --precision/--compile options and their one-line errors.

Tolerances: the inputs are rounded to bf16 first (so both sides see the same numbers, also in
fp16); a loss that upcasts (every margin head does, through ``cosine_logits``) then agrees to
float32 rounding, and the gradients, returned in bf16/fp16, to that rounding. We require value rel. error <= 1e-2 and
gradient cosine >= 0.999 (a hinge switching on or off shows up as cosine ~0.8).
"""
from __future__ import annotations

import copy
import os

import pytest
import torch

from mlcompare import losses
from mlcompare.backbones import ResNetFace, autocast
from mlcompare.cli import main
from mlcompare.config.comparison import TrainConfig
from mlcompare.train.trainer import train
from tests.trainer.test_trainer import tiny_data

VALUE_RTOL = 1e-2
GRAD_COSINE = 0.999
B, D, C = 32, 32, 8



def clustered_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """P x K batch around random class centres, rounded to bf16 (exactly representable in both)."""
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(C).repeat_interleave(B // C)
    centres = torch.randn(C, D, generator=g)
    emb = 3 * (centres[labels] + 0.7 * torch.randn(B, D, generator=g))
    return emb.bfloat16().float(), labels


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def value_and_grad(loss: torch.nn.Module, emb: torch.Tensor, labels: torch.Tensor, precision: str) -> tuple[float, torch.Tensor]:
    x = (emb.to(HALF[precision]) if precision in HALF else emb).requires_grad_(True)
    torch.manual_seed(1)  # a sampling miner (distance-weighted) draws the same negatives in both runs
    with autocast(torch.device("cpu"), precision):
        value = loss(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad.float()


@pytest.mark.parametrize("name, precision", [(n, p) for n in sorted(losses.REGISTRY) for p in ("bf16", "fp16")])
def test_loss_under_half_autocast_agrees_with_fp32(name: str, precision: str) -> None:
    # fp16 is exercised on the CPU only through the losses (CPU autocast accepts it; the trainer refuses it there).
    torch.manual_seed(0)
    loss = losses.get(name, num_classes=C, embedding_dim=D, class_counts=torch.full((C,), B // C))
    emb, labels = clustered_batch()
    v32, g32 = value_and_grad(copy.deepcopy(loss), emb, labels, "fp32")
    v16, g16 = value_and_grad(copy.deepcopy(loss), emb, labels, precision)
    assert v16 == pytest.approx(v32, rel=VALUE_RTOL)
    assert torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0) >= GRAD_COSINE


def test_autocast_helper_runs_matmuls_in_bf16_and_fp32_untouched() -> None:
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.nn.functional.linear(x, w).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert torch.nn.functional.linear(x, w).dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, got 'fp64'"):
        autocast(torch.device("cpu"), "fp64")


def run_steps(loss_name: str, precision: str, steps: int = 3) -> list[float]:
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get(loss_name, num_classes=8, embedding_dim=16)
    cfg = TrainConfig(steps=steps, p=4, k=3, lr=1e-2, warmup_steps=1, log_every=1, precision=precision)
    result = train(model, loss, tiny_data(), cfg, seed=0, device=torch.device("cpu"))
    return [h["loss"] for h in result.history]


@pytest.mark.parametrize("loss_name", ["arcface", "triplet", "margin"])
def test_bf16_training_steps_track_fp32(loss_name: str) -> None:
    # The first step's loss differs only by the backbone's bf16 rounding; the losses the trainer
    # calls get float32 embeddings, so even the pair losses above train safely.
    fp32, bf16 = run_steps(loss_name, "fp32"), run_steps(loss_name, "bf16")
    assert bf16 != fp32  # autocast is really on
    assert bf16[0] == pytest.approx(fp32[0], rel=5e-2, abs=1e-2)
    assert all(map(torch.isfinite, torch.tensor(bf16)))


def test_cli_bf16_run_completes_and_records_precision(tiny, tmp_path) -> None:
    import pandas as pd

    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "2", "--precision", "bf16", "--device", "cpu"]) == 0
    results = pd.read_csv(out / "results.csv")
    trained = results[results.method != "raw pixels"]
    assert set(trained.status) == {"ok"}
    assert set(trained.precision) == {"bf16"}


def test_cli_fp16_on_cpu_is_one_line(tiny, tmp_path, capsys) -> None:
    assert main(["run", str(tiny), "--out", str(tmp_path / "r"), "--no-progress", "--steps", "2",
                 "--precision", "fp16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fp16 needs a CUDA GPU" in err and "bf16" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error torch gives without a GPU")
def test_cli_cuda_without_gpu_is_one_line(tiny, tmp_path, capsys) -> None:
    assert main(["run", str(tiny), "--out", str(tmp_path / "r"), "--no-progress", "--device", "cuda", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "torch sees no CUDA GPU" in err


def test_bad_precision_in_toml_is_one_line(tiny, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny.read_text().replace("[train]\n", "[train]\nprecision = \"half\"\n"))
    assert main(["run", str(bad), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.precision must be 'fp32', 'bf16' or 'fp16', got 'half'" in err


def test_bad_precision_on_command_line_is_rejected(tiny, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", str(tiny), "--precision", "fp8"])
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("MLCOMPARE_SLOW_TESTS"),
                    reason="torch.compile compiles for ~35 s on 2 CPU cores; set MLCOMPARE_SLOW_TESTS=1")
def test_compile_trains_like_eager() -> None:
    pytest.importorskip("torch._dynamo")
    eager = run_steps("softmax", "fp32")
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get("softmax", num_classes=8, embedding_dim=16)
    cfg = TrainConfig(steps=3, p=4, k=3, lr=1e-2, warmup_steps=1, log_every=1, compile=True)
    compiled = [h["loss"] for h in train(model, loss, tiny_data(), cfg, seed=0, device=torch.device("cpu")).history]
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())  # checkpoints stay loadable


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_reduced_precision_training_tracks_fp32(precision: str) -> None:
    def steps(p: str) -> list[float]:
        torch.manual_seed(0)
        model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
        loss = losses.get("arcface", num_classes=8, embedding_dim=16)
        cfg = TrainConfig(steps=3, p=4, k=3, lr=1e-2, warmup_steps=1, log_every=1, precision=p)
        return [h["loss"] for h in train(model, loss, tiny_data(), cfg, seed=0, device=torch.device("cuda")).history]

    assert steps(precision)[0] == pytest.approx(steps("fp32")[0], rel=5e-2)


@pytest.mark.gpu
def test_synthfaces_train_set_lives_on_the_gpu_and_the_test_set_on_the_host(tiny):
    from mlcompare.config import comparison as config
    from mlcompare.config.comparison import apply_overrides
    from mlcompare.run.runner import prepare_data

    cfg = apply_overrides(config.load(str(tiny)), data="synthfaces:identities=12,images_per_identity=4")
    train_set, test_set, _ = prepare_data(cfg, torch.device("cuda"))
    assert train_set.images.device.type == "cuda" and test_set.images.device.type == "cpu"


def test_prepare_data_on_the_cpu_keeps_everything_on_the_cpu(tiny):
    from mlcompare.config import comparison as config
    from mlcompare.config.comparison import apply_overrides
    from mlcompare.run.runner import prepare_data

    cfg = apply_overrides(config.load(str(tiny)), data="synthfaces:identities=12,images_per_identity=4")
    train_set, test_set, _ = prepare_data(cfg, torch.device("cpu"))
    assert train_set.images.device.type == test_set.images.device.type == "cpu"
