"""``--no-progress`` silences every progress bar: reading image files, training, tuning."""
import re

import numpy as np
import pytest
from PIL import Image

from mlcompare.cli import main
from mlcompare.data import stored

BAR = re.compile(r"\d+%\||\d+(?:\.\d+)?[kM]?(?:img|it|trial)/s|reading ")  # what a tqdm bar prints


@pytest.fixture
def folder_comparison(tmp_path):
    """A comparison on an image folder of 8 identities x 4 random 16-px images, two training steps."""
    rng = np.random.default_rng(0)
    for identity in range(8):
        (tmp_path / "faces" / f"id{identity}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "faces" / f"id{identity}" / f"{i}.png")
    path = tmp_path / "folder.toml"
    path.write_text(f"""description = "progress check"
[data]
train = "imagefolder:{tmp_path / 'faces'}"
test_fraction = 0.4
size = 16
verification_pairs = 40
[backbone]
widths = [4]
blocks = [1]
embedding_dim = 8
[train]
steps = 2
p = 2
k = 2
warmup_steps = 0
log_every = 1
[[methods]]
name = "softmax"
loss = "softmax"
""")
    return path


def test_no_progress_prints_no_bar_and_progress_does(folder_comparison, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(stored, "PROGRESS_FROM", 0)  # the folder's 32 images get the bar a large set gets
    assert main(["run", str(folder_comparison), "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    quiet = capfd.readouterr()
    assert not BAR.search(quiet.err + quiet.out), (quiet.err + quiet.out)[-500:]
    assert main(["run", str(folder_comparison), "--out", str(tmp_path / "loud")]) == 0
    loud = capfd.readouterr().err
    assert "reading " in loud and "img/s" in loud  # the data-reading bar and the training bar
