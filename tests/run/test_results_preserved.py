"""A tiny ``run`` and a tiny ``tune`` give the same ``results.csv`` metrics as before the config,
results-schema and report/run split of issue 26 (items 2-4).

``results_before.json`` was written by ``python -m tests.run.test_results_preserved`` with the code of
the commit before that change (it is data, not recomputed here). It holds every results.csv column
but the timings, as text (and the column order), of the CLI tests' TINY comparison (``--steps 6``) and of the tuning tests'
tiny tune (``--steps 3``), plus the tune's trials.csv without its seconds and host. Everything runs on the CPU
with fixed seeds and is compared exactly: the same operations in the same order give the same bits.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from mlcompare import cli
from tests.conftest import TINY

# recorded with one torch thread (tests/conftest.py one_torch_thread says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURE = Path(__file__).parent / "results_before.json"
TIMING = {"train_seconds", "images_per_s", "seconds", "host"}  # timings, and the machine that ran a trial
TUNE = TINY.replace("p = 4", "p = 2").replace("[[methods]]", "[tuning]\ntrials = 2\nfolds = 2\n[[methods]]", 1)


def _rows(path: Path) -> dict:
    """The file's columns in order and its rows, each without its timing columns."""
    with open(path) as f:
        reader = csv.DictReader(f)
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in reader]
        return {"columns": list(reader.fieldnames), "rows": rows}


def tiny_run(root: Path) -> dict:
    (root / "tiny.toml").write_text(TINY)
    assert cli.main(["run", str(root / "tiny.toml"), "--out", str(root / "run"), "--no-progress", "--steps", "6"]) == 0
    return {"results": _rows(root / "run" / "results.csv")}


def tiny_tune(root: Path) -> dict:
    (root / "t.toml").write_text(TUNE)
    assert cli.main(["tune", str(root / "t.toml"), "--out", str(root / "tune"), "--no-progress", "--steps", "3"]) == 0
    return {"results": _rows(root / "tune" / "results.csv"), "trials": _rows(root / "tune" / "tuning" / "trials.csv")}


def before() -> dict:
    return json.loads(FIXTURE.read_text())


def test_a_tiny_run_gives_the_same_results(tmp_path):
    assert tiny_run(tmp_path) == before()["run"]


def test_a_tiny_tune_gives_the_same_results_and_trials(tmp_path):
    assert tiny_tune(tmp_path) == before()["tune"]


if __name__ == "__main__":  # record the fixture (run with the code before a change), on one thread as the tests run
    import tempfile

    import torch

    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "r").mkdir()
        (root / "t").mkdir()
        FIXTURE.write_text(json.dumps({"run": tiny_run(root / "r"), "tune": tiny_tune(root / "t")}, indent=1) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
