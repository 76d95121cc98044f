"""Every value is checked against its field's type and range before any work: one line naming file, key, value, range."""
import re

import pytest

from mlcompare.cli import main
from mlcompare.config import comparison as config
from mlcompare.errors import UserError

METHOD = '[[methods]]\nname = "a"\nloss = "softmax"\n'


def _file(tmp_path, section, line):
    path = tmp_path / "c.toml"
    head = 'description = "d"\n'
    if section:
        path.write_text(head + METHOD + f"[{section}]\n{line}\n")
    else:
        path.write_text(head + line + "\n" + METHOD)
    return path


CASES = [
    ("train", "steps = \"ten\"", "train.steps must be an integer, got 'ten'"),
    ("train", "steps = 0", "train.steps must be >= 1, got 0"),
    ("train", "steps = 2.5", "train.steps must be an integer, got 2.5"),
    ("train", "p = 0", r"train.p must be >= 1 \(identities per batch\), got 0"),
    ("train", "k = 1", r"train.k must be >= 2 \(images per identity in a batch\), got 1"),
    ("train", "lr = nan", "train.lr must be finite and > 0, got nan"),
    ("train", "lr = 0", "train.lr must be finite and > 0, got 0.0"),
    ("train", "lr = \"fast\"", "train.lr must be a number, got 'fast'"),
    ("train", "weight_decay = -1e-4", "train.weight_decay must be finite and >= 0, got -0.0001"),
    ("train", "momentum = 1.0", r"train.momentum must be in \[0, 1\), got 1.0"),
    ("train", "log_every = 0", "train.log_every must be >= 1, got 0"),
    ("train", "checkpoint_every = 0", "train.checkpoint_every must be >= 1, got 0"),
    ("train", "eval_every = -1", "train.eval_every must be >= 0 \\(0: only at the end\\), got -1"),
    ("train", "grad_clip = inf", "train.grad_clip must be finite and >= 0 \\(0: no clipping\\), got inf"),
    ("train", "optimizer = \"adam\"", "train.optimizer must be 'adamw' or 'sgd', got 'adam'"),
    ("train", "precision = \"fp64\"", "train.precision must be 'fp32', 'bf16' or 'fp16', got 'fp64'"),
    ("train", "compile = 1", "train.compile must be true or false, got 1"),
    ("train", "flip = \"yes\"", "train.flip must be true or false, got 'yes'"),
    ("backbone", "embedding_dim = 0", "backbone.embedding_dim must be >= 1, got 0"),
    ("backbone", "widths = \"wide\"", "backbone.widths must be a list of integers, got 'wide'"),
    ("backbone", "widths = [8, 16.5]", r"backbone.widths must be a list of integers, got \[8, 16.5\]"),
    ("backbone", "widths = []", r"backbone.widths must be a non-empty list of positive integers, got \[\]"),
    ("backbone", "blocks = [1, 0, 1, 1]", r"backbone.blocks must be a non-empty list of positive integers, got \[1, 0, 1, 1\]"),
    ("backbone", "widths = [8, 16]", r"backbone.widths \[8, 16\] and backbone.blocks \[1, 2, 2, 1\] must have the same length"),
    ("backbone", "dropout = 1", r"backbone.dropout must be in \[0, 1\), got 1.0"),
    ("data", "size = 8", r"data.size must be in 16..224 \(pixels\), got 8"),
    ("data", "size = 225", r"data.size must be in 16..224 \(pixels\), got 225"),
    ("data", "test_fraction = 0", r"data.test_fraction must be in \(0, 1\), got 0.0"),
    ("data", "test_fraction = 1.0", r"data.test_fraction must be in \(0, 1\), got 1.0"),
    ("data", "verification_pairs = 1", "data.verification_pairs must be >= 2, got 1"),
    ("data", "workers = -1", r"data.workers must be >= 0 \(0: decode into memory\), got -1"),
    ("data", "train = 3", "data.train must be a string, got 3"),
    ("", "seeds = 0", "seeds must be >= 1, got 0"),
    ("", "seeds = true", "seeds must be an integer, got True"),
    ("", "question = 1", "question must be a string, got 1"),
]


@pytest.mark.parametrize("section, line, message", CASES)
def test_bad_value_in_a_file(tmp_path, section, line, message):
    path = _file(tmp_path, section, line)
    with pytest.raises(UserError, match=rf"^{path}: {message}"):
        config.load(str(path))


@pytest.mark.parametrize("line, message", [
    ("p = -1", r"method 'a': p must be >= 0 \(0: the train section's\), got -1"),
    ("k = 1", r"method 'a': k must be 0 \(the train section's\) or >= 2, got 1"),
    ("embedding_dim = -8", r"method 'a': embedding_dim must be >= 0 \(0: the backbone's\), got -8"),
    ("label_noise = 1.0", r"method 'a': label_noise must be in \[0, 1\), got 1.0"),
    ("params = 3", "method 'a': params must be a table, got 3"),
    ("p = \"many\"", "method 'a': p must be an integer, got 'many'"),
])
def test_bad_method_value(tmp_path, line, message):
    path = tmp_path / "c.toml"
    path.write_text('description = "d"\n' + METHOD + line + "\n")
    with pytest.raises(UserError, match=rf"^{path}: {message}$"):
        config.load(str(path))


def test_values_in_range_are_kept_and_ints_become_floats(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('description = "d"\n' + METHOD + "[train]\nlr = 1\nk = 2\np = 1\n[data]\nsize = 16\ntest_fraction = 0.5\n")
    cfg = config.load(str(path))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert (cfg.train.k, cfg.train.p, cfg.data.size) == (2, 1, 16)


@pytest.mark.parametrize("section, line, message", [CASES[0], CASES[3], CASES[5], CASES[19], CASES[25]])
def test_the_cli_stops_with_one_line_and_creates_nothing(tmp_path, capsys, section, line, message):
    path = _file(tmp_path, section, line)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mlcompare: error: {path}: ")
    assert len(re.findall(message, err[0])) == 1
    assert not out.exists()
