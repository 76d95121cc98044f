"""The command-line options of `run`/`tune` are `--set` edits: each gives the config that the equivalent
`--set` gives (config.json byte for byte), checked by the same rules."""
import json

import pytest

from mlcompare.cli import _parser, main
from mlcompare.config import limits
from mlcompare.config import comparison as config
from mlcompare.run import runner
from mlcompare.tune import tuning

# (options, the --set edits they stand for, on the CLI tests' TINY comparison: 12 steps, warm-up 2, digits)
EQUIVALENT = [
    (["--seeds", "2"], ["seeds=2"]),
    (["--steps", "30"], ["train.steps=30", "train.warmup_steps=2"]),  # a tenth of 30 is 3: the warm-up stays 2
    (["--steps", "6"], ["train.steps=6", "train.warmup_steps=1"]),  # --steps lowers the warm-up to a tenth
    (["--budget", "standard"], ["train.steps=48", "train.warmup_steps=8"]),
    (["--budget", "long", "--steps", "20"], ["train.steps=20", "train.warmup_steps=2"]),  # --steps wins
    (["--precision", "bf16"], ["train.precision=bf16"]),
    (["--compile"], ["train.compile=true"]),
    (["--workers", "2"], ["data.workers=2"]),
    (["--tensorboard"], ["logging.tensorboard=true"]),
    (["--data", "digits"], []),  # the comparison's own data: nothing changes
    (["--data", "synthfaces:identities=8"],
     ["data.train=synthfaces:identities=8", 'description="tiny end-to-end check [This run: trained on '
      'synthfaces:identities=8, not the comparison\'s own digits.]"']),
    (["--test-data", "digits"], ["data.test=digits", 'description="tiny end-to-end check [This run: tested on digits.]"']),
]


def _config_of(monkeypatch, argv: list[str]) -> dict:
    """The config `main(argv)` would run, as config.json records it (the run itself replaced by a spy)."""
    seen = []
    monkeypatch.setattr(runner, "run", lambda cfg, out, **kw: seen.append(cfg.to_dict()) or out)
    monkeypatch.setattr(tuning, "tune", lambda cfg, out, **kw: seen.append(cfg.to_dict()) or out)
    assert main(argv) == 0
    return json.loads(json.dumps(seen[0], default=str))


@pytest.mark.parametrize("command", ["run", "tune"])
@pytest.mark.parametrize("options, sets", EQUIVALENT, ids=[" ".join(o) for o, _ in EQUIVALENT])
def test_an_option_gives_the_config_of_the_equivalent_set(monkeypatch, tiny, tmp_path, command, options, sets):
    base = [command, str(tiny), "--out", str(tmp_path / "r"), "--no-progress"]
    by_option = _config_of(monkeypatch, base + options)
    by_set = _config_of(monkeypatch, base + [a for s in sets for a in ("--set", s)])
    assert by_option == by_set
    assert by_option != _config_of(monkeypatch, base) or not sets  # the option changed something


def test_an_epochs_budget_scales_its_epochs(tiny):
    cfg = config.load(str(tiny), sets=["train.epochs=2"], options={"budget": "standard"})
    assert (cfg.train.epochs, cfg.train.warmup_steps) == (8.0, 8)
    assert config.load(str(tiny), sets=["train.epochs=2"], options={"budget": "standard", "steps": 5}).train.epochs == 0


def test_options_win_over_set_and_meet_the_files_rules(tiny):
    assert config.load(str(tiny), sets=["seeds=3"], options={"seeds": 2}).seeds == 2
    assert config.load(str(tiny), sets=["train.precision=bf16"], options={"precision": None}).train.precision == "bf16"
    with pytest.raises(SystemExit):  # argparse refuses what the config's own table lacks
        _parser().parse_args(["run", str(tiny), "--precision", "fp8"])
    args = _parser().parse_args(["run", str(tiny), "--budget", "long"])
    assert args.budget in limits.BUDGETS


def test_a_run_with_an_option_and_one_with_the_set_write_the_same_config_json(tiny, tmp_path):
    common = ["run", str(tiny), "--no-progress", "--steps", "2"]
    assert main([*common, "--out", str(tmp_path / "a"), "--seeds", "1", "--precision", "bf16"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--set", "seeds=1", "--set", "train.precision=bf16"]) == 0
    assert (tmp_path / "a" / "config.json").read_text() == (tmp_path / "b" / "config.json").read_text()
