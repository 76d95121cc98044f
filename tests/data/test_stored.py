"""Training sets left on disk (``--workers N``): the same pixels, batches and trained weights as in memory."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from mlcompare import losses
from mlcompare import data as datasets
from mlcompare.backbones import ResNetFace
from mlcompare.cli import main
from mlcompare.config.comparison import TrainConfig
from mlcompare.data.recordio import write_recordio
from mlcompare.data.stored import StoredImages, loaded_batches
from mlcompare.train.trainer import train


@pytest.fixture(scope="module")
def digits_rec(tmp_path_factory):
    """scikit-learn's digits at 16 px as a lossless (PNG) RecordIO pair, grouped by class."""
    digits = datasets.load("digits", size=16)
    order = torch.argsort(digits.labels, stable=True)
    folder = tmp_path_factory.mktemp("rec")
    write_recordio(folder, list(digits.images[order]), digits.labels[order].tolist())
    return folder, digits.subset(order, relabel=False)


def test_streamed_recordio_is_the_in_memory_set(digits_rec):
    folder, digits = digits_rec
    stored = datasets.load(f"recordio:{folder}", size=16, stream=True)
    memory = datasets.load(f"recordio:{folder}", size=16)
    assert isinstance(stored.images, StoredImages) and isinstance(memory.images, torch.Tensor)
    assert stored.images.shape == memory.images.shape == digits.images.shape
    assert torch.equal(memory.images, digits.images) and torch.equal(stored.labels, memory.labels)
    index = torch.tensor([5, 0, 17, 5])
    assert torch.equal(stored.images[index], memory.images[index])
    assert torch.equal(stored.images[3:9], memory.images[3:9]) and torch.equal(stored.images[7], memory.images[7])
    part = stored.subset(torch.tensor([4, 2, 9]))  # selects without decoding
    assert isinstance(part.images, StoredImages) and torch.equal(part.images[:], memory.images[[4, 2, 9]])
    assert torch.equal(stored.in_memory(progress=False).images, memory.images)


def test_streamed_imagefolder_is_the_in_memory_set(att_faces):
    stored = datasets.load(f"imagefolder:{att_faces}", size=24, stream=True)
    memory = datasets.load(f"imagefolder:{att_faces}", size=24)
    index = torch.tensor([0, 399, 123])
    assert isinstance(stored.images, StoredImages)
    assert torch.equal(stored.images[index], memory.images[index]) and torch.equal(stored.labels, memory.labels)


@pytest.mark.parametrize("workers", [0, 2])
def test_loaded_batches_from_disk_equal_indexing_memory(digits_rec, workers):
    folder, digits = digits_rec
    stored = datasets.load(f"recordio:{folder}", size=16, stream=True)
    batch_of = lambda step: torch.randperm(len(digits), generator=torch.Generator().manual_seed(step))[:12]  # noqa: E731
    got = list(loaded_batches(stored.images, batch_of, 3, 7, workers=workers))
    want = list(loaded_batches(digits.images, batch_of, 3, 7))
    assert len(got) == len(want) == 4
    for step, ((index, images), (want_index, want_images)) in enumerate(zip(got, want), 3):
        assert torch.equal(index, batch_of(step)) and torch.equal(want_index, batch_of(step))
        assert torch.equal(images, want_images) and torch.equal(images, digits.images[batch_of(step)])


def _trained(data, workers: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get("arcface", num_classes=data.num_identities, embedding_dim=16)
    cfg = dataclasses.replace(TrainConfig(), steps=4, p=4, k=4, warmup_steps=1, log_every=1, checkpoint_every=100)
    train(model, loss, data, cfg, seed=1, device=torch.device("cpu"), workers=workers)
    return model.state_dict()


def test_training_from_disk_with_workers_equals_training_in_memory(digits_rec):
    folder, _ = digits_rec
    memory = _trained(datasets.load(f"recordio:{folder}", size=16), 0)
    streamed = _trained(datasets.load(f"recordio:{folder}", size=16, stream=True), 2)
    for key, value in memory.items():
        assert torch.equal(streamed[key], value), key


def test_cli_trains_on_recordio_with_workers(digits_rec, tiny, tmp_path):
    folder, _ = digits_rec
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "3",
                 "--data", f"recordio:{folder}", "--workers", "1"]) == 0
    results = pd.read_csv(out / "results.csv")
    assert (results.status == "ok").all()


def test_negative_workers_is_one_clear_line(tiny, capsys):
    assert main(["run", str(tiny), "--workers", "-1", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers must be >= 0" in err[0]


@pytest.mark.gpu
def test_batches_from_disk_come_pinned_and_train_on_the_gpu(digits_rec, tiny, tmp_path):
    folder, digits = digits_rec
    stored = datasets.load(f"recordio:{folder}", size=16, stream=True)
    _, batch = next(loaded_batches(stored.images, lambda step: torch.arange(12), 0, 1, workers=1, pin_memory=True))
    assert batch.is_pinned() and torch.equal(batch, digits.images[:12])
    out = tmp_path / "run"
    assert main(["run", str(tiny), "--out", str(out), "--no-progress", "--steps", "3", "--device", "cuda",
                 "--data", f"recordio:{folder}", "--workers", "1"]) == 0
    assert (pd.read_csv(out / "results.csv").status == "ok").all()


def test_workers_with_a_source_held_in_memory_warns(tiny, tmp_path):
    with pytest.warns(UserWarning, match="digits is held in memory, so no worker processes are started"):
        assert main(["run", str(tiny), "--out", str(tmp_path / "run"), "--no-progress", "--steps", "2", "--workers", "2"]) == 0
