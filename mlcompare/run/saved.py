"""What a run directory must hold for its report, read and checked before anything is drawn.

A damaged run (a truncated results.csv, a lost config.json or curves file) would otherwise render a
plausible-looking but wrong report: a table of the surviving rows, setup lines reading "None", a
significance column that silently disappears. :func:`load` refuses such a run with one line that
names the missing piece, so the caller never gets as far as replacing a good report.
"""
from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcompare.config import results_schema
from mlcompare.config.comparison import SWEEPABLE
from mlcompare.errors import UserError
from mlcompare.run import comparison_tests, provenance, quality_stats
from mlcompare.run.rundir import curves_path

# The config.json keys the report's setup lines and title read, per section ("" is the top level).
# Keys the report reads with a default (question, sweep, world_size, train.precision, backbone.name,
# backbone.pretrained, backbone_cost) are not here:
# run directories written before they existed lack them.
CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "": ("name", "description", "seeds", "methods", "device", "train_identities", "train_images",
         "test_identities", "test_images", "verification_pairs"),
    "data": ("train", "test", "test_fraction", "size"),
    "backbone": ("widths", "blocks", "embedding_dim"),
    "train": ("p", "k", "optimizer", "lr", "warmup_steps", "steps"),
}
KEY_COLUMNS = ("method", "seed", "status", "family", "loss")  # never empty in a row the runner wrote
# every metric the report's table always shows, and the cost columns
METRIC_COLUMNS = tuple(m.name for m in results_schema.METRICS if m.table == results_schema.ALWAYS) + ("images_per_s",
                                                                                                       "train_seconds")
CURVE_KEYS = ("fpr", "tpr", "cmc", "pair_scores", "same")  # ROC, CMC and the one-seed significance test
STATUSES = ("ok", "failed")
HISTORY_COLUMNS = ("method", "seed", "step", "loss")
# What a report folder keeps of its run, so that `mlcompare report FOLDER` renders it again: every file the
# report reads (those missing from the run are skipped) and the curves/ folder; not checkpoints/, tensorboard/
# or tuning/study.db, which only training and tuning read.
REPORT_FILES = ("config.json", "results.csv", "history.csv", "provenance.json", "test_labels_sample.npy",
                "tuning/trials.csv", "tuning/space.json")
REPORT_FOLDERS = ("curves", "stats")
# Curves files written before the runner saved its angle-histogram edges as `theta_bins` used these:
# 2-degree bins from 0 to 180 degrees.
OLDER_RUNS_THETA_BINS = np.linspace(0.0, 180.0, 91)


@dataclass(frozen=True)
class RunInputs:
    """A run directory's saved results, checked; ``curves`` holds the arrays of every 'ok' row of
    ``results`` by (method, seed), ``labels`` the identities of the embedded test sample (None when
    no curves file holds embeddings)."""

    config: dict[str, Any]
    results: pd.DataFrame
    history: pd.DataFrame
    curves: dict[tuple[str, int], dict[str, np.ndarray]]
    labels: np.ndarray | None
    provenance: dict[str, Any] | None = None  # provenance.json; None for runs written before it existed
    # stats/quality.json by (method, training seed, fold); None for runs without it (mlcompare.run.quality_stats)
    quality: dict[tuple[str, int, int], dict] | None = None
    # stats/tests.json: the tests between methods (mlcompare.run.comparison_tests); None for runs without it
    tests: dict[str, Any] | None = None


def theta_bins(curves: Mapping[str, np.ndarray]) -> np.ndarray:
    """The angle-histogram bin edges (degrees, length bins + 1) a curves file was written with."""
    return np.asarray(curves["theta_bins"], dtype=float) if "theta_bins" in curves else OLDER_RUNS_THETA_BINS


def plotted_sweep(config: Mapping[str, Any]) -> str:
    """The swept key the report plots accuracy against: a method field that results.csv has a column
    for (:data:`mlcompare.config.comparison.SWEEPABLE`); empty for no sweep or a ``params.NAME`` sweep."""
    sweep = config.get("sweep", "")  # run directories written before sweeps existed lack the key
    return sweep if sweep in SWEEPABLE else ""


def load(run: Path) -> RunInputs:
    """Read config.json, results.csv and history.csv of ``run``; raise :class:`UserError` naming the
    first missing or damaged piece (results.csv, config.json, a curves file, the embedded labels)."""
    results = _results(run)
    config = _config(run)
    sweep = plotted_sweep(config)
    if sweep and sweep not in results:
        results = _sweep_from_config(results, config, sweep)
    for col in ("group", sweep) if sweep else ():
        if col not in results:
            raise UserError(f"'{run / 'results.csv'}' lacks the column '{col}' that the sweep over '{sweep}' plots: "
                            f"restore the file or re-run the comparison")
    curves = _curves(run, results)
    history = replicates(_history(run), numbered_by=results)
    results = replicates(results)
    labels = _labels(run, curves)
    return RunInputs(config=config, results=results, history=history, curves=curves, labels=labels,
                     provenance=provenance.read(run), quality=quality_stats.load(run),
                     tests=comparison_tests.load(run))


def replicates(frame: pd.DataFrame, numbered_by: pd.DataFrame | None = None) -> pd.DataFrame:
    """Under cross-validation (a ``fold`` column) every (fold, seed) is one replicate of a method, and
    the report's statistics over seeds run over them: ``seed`` becomes the replicate's number (fold-major,
    the raw-pixel floor's one per fold too), the fold and training seed staying in ``fold`` and
    ``train_seed``; ``numbered_by`` (the results) numbers another frame (history) alike. Without
    folds the frame is returned as it is."""
    if "fold" not in frame:
        return frame
    base = frame if numbered_by is None else numbered_by
    pairs = sorted(set(zip(base.fold.astype(int), base.seed.astype(int))))
    number = {pair: i for i, pair in enumerate(pairs)}
    replicate = [number[(int(f), int(s))] for f, s in zip(frame.fold, frame.seed)]
    return frame.assign(train_seed=frame.seed, seed=replicate)


def _sweep_from_config(results: pd.DataFrame, config: Mapping[str, Any], sweep: str) -> pd.DataFrame:
    """The swept column rebuilt from config.json's methods, for runs written before results.csv had it
    (``train_identities``, before its column existed); unchanged where a method is not in the config
    or sets no value (0 means all identities: the figure cannot place it)."""
    values = {m["name"]: m.get(sweep) for m in config.get("methods", [])}
    known = results.method[results.family != "baseline"]
    if not known.isin([name for name, v in values.items() if v]).all():
        return results
    return results.assign(**{sweep: results.method.map(lambda name: values.get(name) or float("nan"))})


def missing_rows(inputs: RunInputs) -> list[str]:
    """The method x seed runs that config.json lists and results.csv has no row for ('softmax seed 1')."""
    r = inputs.results
    if "fold" in r:
        have = set(zip(r.method, r.train_seed.astype(int), r.fold.astype(int)))
        return [f"{m['name']} seed {s} fold {f['fold']}" for f in inputs.config.get("folds", [])
                for s in range(int(inputs.config["seeds"])) for m in inputs.config["methods"]
                if (m["name"], s, f["fold"]) not in have]
    have = set(zip(r.method, r.seed.astype(int)))
    return [f"{m['name']} seed {s}" for s in range(int(inputs.config["seeds"])) for m in inputs.config["methods"]
            if (m["name"], s) not in have]


def _results(run: Path) -> pd.DataFrame:
    path = run / "results.csv"
    if not path.exists():
        raise UserError(f"'{run}' holds no results.csv: not a run directory (run `mlcompare run NAME --out {run}` first)")
    fix = "restore it or re-run the comparison"
    text = path.read_text(errors="replace")
    if not text.endswith("\n"):  # the runner writes whole rows; a file cut short ends inside one
        raise UserError(f"'{path}' ends in the middle of a row (truncated): {fix}")
    try:
        results = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"'{path}' is not a readable CSV ({str(err).splitlines()[0]}): {fix}") from None
    missing = [c for c in (*KEY_COLUMNS, "message", *METRIC_COLUMNS) if c not in results]
    if missing:
        raise UserError(f"'{path}' lacks the column(s) {', '.join(missing)}: {fix}")
    if results.empty:
        raise UserError(f"'{path}' holds no rows: {fix}")
    for col in KEY_COLUMNS:
        if results[col].isna().any():
            raise UserError(f"'{path}' row {int(results[col].isna().to_numpy().argmax()) + 2} has no {col}: {fix}")
    seeds = pd.to_numeric(results.seed, errors="coerce")
    if seeds.isna().any() or (seeds != seeds.round()).any():
        raise UserError(f"'{path}' has a seed that is not a whole number: {fix}")
    bad = sorted(set(results.status) - set(STATUSES))
    if bad:
        raise UserError(f"'{path}' has status '{bad[0]}' (expected {' or '.join(STATUSES)}): {fix}")
    ok = results[results.status == "ok"]
    for col in METRIC_COLUMNS:
        given = ok[col].notna()
        if (pd.to_numeric(ok[col], errors="coerce").isna() & given).any():
            raise UserError(f"'{path}' has a {col} that is not a number: {fix}")
    for col in ("accuracy", "rank_1"):  # the summary sentence and the bar chart quote them for every ok row
        if ok[col].isna().any():
            raise UserError(f"'{path}': the 'ok' row of {ok[ok[col].isna()].method.iloc[0]} has no {col}: {fix}")
    return results


def _config(run: Path) -> dict[str, Any]:
    path = run / "config.json"
    fix = "restore it from the run (or re-run the comparison)"
    if not path.exists():
        raise UserError(f"'{run}' holds no config.json (the report's title and setup come from it): {fix}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"'{path}' is not valid JSON ({err}): {fix}") from None
    if not isinstance(config, dict):
        raise UserError(f"'{path}' holds a {type(config).__name__}, not the run's resolved config: {fix}")
    for section, keys in CONFIG_KEYS.items():
        table = config.get(section, None) if section else config
        if not isinstance(table, dict):
            raise UserError(f"'{path}' lacks the table '{section}': {fix}")
        absent = [k for k in keys if k not in table]
        if absent:
            raise UserError(f"'{path}' lacks {', '.join(f'{section}.{k}' if section else k for k in absent)}: {fix}")
    if not isinstance(config["seeds"], int) or config["seeds"] < 1:
        raise UserError(f"'{path}': seeds is {config['seeds']!r}, not a number of seeds: {fix}")
    if not isinstance(config["methods"], list) or not all(isinstance(m, dict) and "name" in m for m in config["methods"]):
        raise UserError(f"'{path}': every entry of 'methods' needs a 'name': {fix}")
    return config


def _curves(run: Path, results: pd.DataFrame) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """Every 'ok' row's curves file, opened and holding the ROC, CMC and pair scores."""
    curves = {}
    numbered = replicates(results)
    for row, replicate in zip(results[results.status == "ok"].itertuples(), numbered[results.status == "ok"].seed):
        fold = int(getattr(row, "fold", 0) or 0)
        path = curves_path(run, row.method, int(row.seed), fold)
        if not path.exists():
            raise UserError(f"'{path}' is missing (the ROC, CMC and significance of {row.method} seed {int(row.seed)} "
                            f"come from it): restore the run's curves/ folder or re-run the comparison")
        try:
            with np.load(path) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f"'{path}' cannot be read ({err}): restore it or re-run the comparison") from None
        absent = [k for k in CURVE_KEYS if k not in arrays]
        if absent:
            raise UserError(f"'{path}' lacks {', '.join(absent)}: restore it or re-run the comparison")
        bins = theta_bins(arrays)
        for key in ("theta_target_hist", "theta_other_hist"):
            if key in arrays and len(arrays[key]) != len(bins) - 1:
                raise UserError(f"'{path}': {key} has {len(arrays[key])} bins but theta_bins {len(bins)} edges: "
                                f"restore it or re-run the comparison")
        curves[(row.method, int(replicate))] = arrays
    return curves


def _labels(run: Path, curves: dict[tuple[str, int], dict[str, np.ndarray]]) -> np.ndarray | None:
    """The identities of the test sample whose embeddings the curves files hold (one per embedding)."""
    sizes = {len(c["embeddings"]) for c in curves.values() if "embeddings" in c}
    if not sizes:
        return None
    path = run / "test_labels_sample.npy"
    if not path.exists():
        raise UserError(f"'{path}' is missing (the embedding figure colours and counts identities by it): "
                        f"restore it or re-run the comparison")
    try:
        labels = np.load(path, allow_pickle=False)  # an object array would unpickle: refused, never run
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"'{path}' cannot be read as an array of labels ({str(err).splitlines()[0] if str(err) else err!r}): "
                        "restore it or re-run the comparison") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"'{path}' holds a {labels.dtype} array of shape {labels.shape}, not one integer label per "
                        "embedding: restore it or re-run the comparison")
    if sizes != {len(labels)}:
        raise UserError(f"'{path}' holds {len(labels)} labels but the curves files {max(sizes)} embeddings: "
                        f"restore them or re-run the comparison")
    return labels


def _history(run: Path) -> pd.DataFrame:
    """history.csv (empty when the run logged no step): the loss and statistics figures plot it."""
    path = run / "history.csv"
    if not path.exists():
        return pd.DataFrame()
    try:
        history = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"'{path}' is not a readable CSV ({str(err).splitlines()[0]}): restore it or re-run") from None
    missing = [c for c in HISTORY_COLUMNS if c not in history]
    if missing:
        raise UserError(f"'{path}' lacks the column(s) {', '.join(missing)}: restore it or re-run the comparison")
    return history
