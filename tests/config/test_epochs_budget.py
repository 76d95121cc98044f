"""A budget in epochs: steps = ceil(epochs x training images / (p x k)) per method, the same batches as
that many steps, and steps or epochs, never both, in one file or one command line."""
import json
import math

import pandas as pd
import pytest

from mlcompare.cli import main
from mlcompare.config import comparison as config
from mlcompare.errors import UserError


@pytest.mark.parametrize("epochs, images, batch, steps", [(3, 1000, 64, 47), (1, 640, 64, 10), (0.1, 640, 64, 1),
                                                          (0.5, 7, 16, 1), (2.5, 1073, 16, 168)])
def test_the_formula(epochs, images, batch, steps):
    assert config.epoch_steps(epochs, images, batch) == steps  # 3 x 1000 / 64 = 46.875; 2.5 x 1073 / 16 = 167.66


def test_epochs_train_the_batches_of_the_equivalent_steps_and_grow_with_the_data(tiny, tmp_path):
    # the second method trains on 4 of the 6 training identities: fewer images, fewer steps
    tiny.write_text(tiny.read_text() + '[[methods]]\nname = "softmax-4"\nloss = "softmax"\ntrain_identities = 4\n')
    by_epochs, by_steps = tmp_path / "epochs", tmp_path / "steps"
    assert main(["run", str(tiny), "--out", str(by_epochs), "--no-progress", "--set", "train.epochs=0.1"]) == 0
    results = pd.read_csv(by_epochs / "results.csv").set_index("method")
    saved = json.loads((by_epochs / "config.json").read_text())
    assert saved["train"]["epochs"] == 0.1
    images = saved["train_images"]  # 1073 digits of 6 identities
    assert results.loc["softmax", "steps"] == math.ceil(0.1 * images / 16) == 7
    four = results.loc["softmax-4", "steps"]
    assert 1 <= four < 7 and four == config.epoch_steps(0.1, int(four_images(tiny)), 16)
    # the same run by steps: the same batches, hence the same history and scores
    assert main(["run", str(tiny), "--out", str(by_steps), "--no-progress", "--set", "train.steps=7",
                 "--set", "methods.softmax-4.train_identities=0"]) == 0
    want = pd.read_csv(by_steps / "results.csv").set_index("method").loc["softmax"]
    metrics = ["accuracy", "auc", "rank_1", "map_at_r", "steps"]
    assert results.loc["softmax", metrics].tolist() == want[metrics].tolist()
    h_epochs, h_steps = (pd.read_csv(d / "history.csv") for d in (by_epochs, by_steps))
    assert h_epochs[h_epochs.method == "softmax"].loss.tolist() == h_steps[h_steps.method == "softmax"].loss.tolist()
    assert "for 0.1 epochs" in (by_epochs / "report.md").read_text()


def four_images(tiny) -> int:
    """Images of the 4-identity subset the runner trains softmax-4 on (seed 0)."""
    from mlcompare.run import runner

    cfg = config.load(str(tiny))
    train_set, _, _ = runner.prepare_data(cfg)
    method = next(m for m in cfg.methods if m.name == "softmax-4")
    return len(runner.training_set(train_set, method, seed=0))


def test_steps_and_epochs_in_one_file_or_one_command_line_are_refused(tiny, tmp_path):
    both = tmp_path / "both.toml"
    both.write_text(tiny.read_text().replace("[train]\n", "[train]\nepochs = 2\n"))
    with pytest.raises(UserError, match=r"train.steps and train.epochs both given; a budget is one or the other"):
        config.load(str(both))
    with pytest.raises(UserError, match=r"--set: train.steps and train.epochs both given"):
        config.load(str(tiny), sets=["train.steps=5", "train.epochs=2"])


def test_a_later_layer_gives_the_budget_whichever_key_it_uses(tiny, tmp_path):
    child = tmp_path / "child.toml"
    child.write_text('extends = "tiny.toml"\n[train]\nepochs = 2.0\n')
    cfg = config.load(str(child))
    assert cfg.train.epochs == 2.0 and cfg.train.steps == config.TrainConfig().steps  # tiny's 12 steps dropped
    assert config.load(str(child), sets=["train.steps=5"]).train.epochs == 0.0
    assert config.load(str(tiny), sets=["train.epochs=3"]).train.epochs == 3.0
    over = config.apply_overrides(cfg, steps=4)
    assert (over.train.steps, over.train.epochs) == (4, 0.0)  # --steps wins, as over --budget
    assert config.apply_overrides(cfg, budget="standard").train.epochs == 8.0
    with pytest.raises(UserError, match=r"train.epochs must be finite and >= 0"):
        config.load(str(tiny), sets=["train.epochs=-1"])
