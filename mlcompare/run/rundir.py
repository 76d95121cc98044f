"""The run directory: created once, written atomically, never overwritten without ``--force``.

Layout::

    RUN_DIR/config.json        resolved config (after command-line overrides)
    RUN_DIR/provenance.json    what made the run: code, libraries, machine, command, time, data knobs
    RUN_DIR/results.csv        one row per method x seed: metrics, time, images/s, status
    RUN_DIR/history.csv        one row per logged step: method, seed, step, loss, lr, loss stats
    RUN_DIR/curves/M-sS.npz    ROC and CMC of each method x seed, for re-rendering the report
    RUN_DIR/checkpoints/M-sS.pt
    RUN_DIR/report.md, report.html, figures/*.png
    RUN_DIR/.lock              while a run writes it (see mlcompare.run.runlock)
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcompare.config.names import slug
from mlcompare.errors import UserError
from mlcompare.files.outputs import check_writable
from mlcompare.run import runlock


def _stem(method: str, seed: int, fold: int) -> str:
    """``arcface-s0``; under cross-validation ``arcface-f3-s0`` (fold 0: none)."""
    return f"{slug(method)}-f{fold}-s{seed}" if fold else f"{slug(method)}-s{seed}"


def curves_path(run: Path, method: str, seed: int, fold: int = 0) -> Path:
    """Where a method x seed's (x fold's) ROC, CMC, pair scores and embedding sample are saved."""
    return run / "curves" / f"{_stem(method, seed, fold)}.npz"


def checkpoint_path(run: Path, method: str, seed: int, fold: int = 0) -> Path:
    return run / "checkpoints" / f"{_stem(method, seed, fold)}.pt"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


def write_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class RunDir:
    """Where a comparison writes. With ``force``, work goes to a sibling staging folder that
    replaces the old run only when the new one is complete (:meth:`commit`), so an interrupted
    forced run loses nothing."""

    def __init__(self, final: Path, *, force: bool, resume: bool) -> None:
        self.final = final
        if force and resume:
            raise UserError("--force and --resume contradict each other: --resume continues a run, --force replaces it")
        if final.exists() and not final.is_dir():
            raise UserError(f"--out '{final}' is a file, not a run directory; give a new folder (nothing was changed)")
        exists = final.is_dir() and any(final.iterdir())
        is_run = (final / "config.json").is_file()
        running = runlock.holder(final) if final.is_dir() else None
        if running:  # checked first: a second run must not wait for its data to learn this
            raise UserError(f"run directory '{final}' is in use by another run ({running}); "
                            "wait for it to finish, or give another --out")
        if exists and not (force or resume):
            raise UserError(f"run directory '{final}' already exists; use --resume to continue it or --force to replace it")
        if exists and force and not is_run:
            raise UserError(f"--force replaces only a run directory, and '{final}' holds no config.json; "
                            "give a new folder for --out (nothing of yours was moved)")
        if resume and not is_run:
            raise UserError(f"--resume: '{final}' holds no run (no config.json); start it without --resume")
        check_writable(final, what="the run directory", option="--out")
        self.path = final.with_name(final.name + ".partial") if (force and exists) else final
        self.fresh = not exists
        self.lock: runlock.RunLock | None = None

    def check_resumable(self, config: dict[str, Any]) -> None:
        """``--resume`` continues the saved run only with the same settings: a run trained to 200 steps
        and resumed as 5 would be reported as what it is not. Refuses with the differences listed."""
        saved = flatten(json.loads((self.final / "config.json").read_text()))
        # A key the saved run lacks was added to mlcompare since, at a default that keeps old behaviour.
        changed = [f"{key}: {saved[key]!r} -> {value!r}" for key, value in flatten(config).items()
                   if key in saved and saved[key] != value]
        if changed:
            raise UserError(f"--resume with settings that differ from the saved run ({'; '.join(changed)}); "
                            "resume with the saved settings, or start a new run (another --out, or --force)")

    def create(self) -> None:
        """Lock the run directory and make the folders; called once the inputs are known to be good, so a
        bad input leaves nothing. Another run that took the folder meanwhile is refused here."""
        self.final.mkdir(parents=True, exist_ok=True)
        self.lock = runlock.RunLock(self.final)
        if self.fresh and (self.final / "config.json").exists():  # another run came and went while we loaded data
            self.release()
            raise UserError(f"run directory '{self.final}' was written by another run meanwhile; "
                            "use --resume to continue it or --force to replace it")
        if self.path != self.final and self.path.exists():
            shutil.rmtree(self.path)  # a previous interrupted --force staging area: ours to discard
        for sub in ("curves", "checkpoints", "figures"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def commit(self) -> Path:
        """Swap the staging folder in place of the old run (only after a ``--force`` run)."""
        if self.path != self.final:
            old = self.final.with_name(self.final.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.final, old)
            os.replace(self.path, self.final)
            shutil.rmtree(old)
            self.path = self.final
        return self.final

    def release(self) -> None:
        """Give up the lock (the run is over, or failed): another run may then use the folder."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def save_config(self, config: dict[str, Any]) -> None:
        write_text_atomic(self.path / "config.json", json.dumps(config, indent=2, default=str))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"p": 8}}`` -> ``{"train.p": 8}`` (lists of methods compared whole, as JSON)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))
    return out


def read_results(run: Path) -> pd.DataFrame:
    path = run / "results.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def read_history(run: Path) -> pd.DataFrame:
    path = run / "history.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()
