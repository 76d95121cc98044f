from pathlib import Path

import pytest

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
