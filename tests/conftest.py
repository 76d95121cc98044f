from pathlib import Path

import pytest

from mlcompare.cli import main

ATT_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "att-faces"


@pytest.fixture
def att_faces() -> Path:
    if not (ATT_FACES / "s1").is_dir():
        pytest.skip(f"ORL face database not found at {ATT_FACES} (expected ../shared/data/att-faces beside the repo)")
    return ATT_FACES


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch sees none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

# A tiny comparison (digits, two methods, a few steps) that the CLI tests run end to end.
TINY = """
description = "tiny end-to-end check"
[data]
train = "digits"
test_fraction = 0.4
size = 16
verification_pairs = 400
[backbone]
widths = [8, 16]
blocks = [1, 1]
embedding_dim = 16
[train]
steps = 12
p = 4
k = 4
warmup_steps = 2
log_every = 3
checkpoint_every = 6
[[methods]]
name = "softmax"
loss = "softmax"
[[methods]]
name = "triplet-bh"
loss = "triplet"
miner = "batch_hard"
params = { margin = 0.2 }
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny run directory, shared by a module's tests (read-only)."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.toml").write_text(TINY)
    assert main(["run", str(root / "tiny.toml"), "--out", str(root / "run"), "--no-progress", "--steps", "6"]) == 0
    return root / "run"

CFP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cfp"


@pytest.fixture
def cfp() -> Path:
    if not (CFP / "Protocol" / "Split" / "FP").is_dir():
        pytest.skip(f"CFP not found at {CFP} (expected ../shared/data/cfp beside the repo)")
    return CFP


@pytest.fixture
def one_torch_thread():
    """Values recorded to the bit were computed with one torch thread: a sum split over more threads
    adds in another order and rounds differently, so a test comparing bits runs on one thread too."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
