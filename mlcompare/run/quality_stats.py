"""The quality statistics a run computes when it finishes, for the report's quality sections.

Per method x seed whose curves file holds ground-truth quality (``test_degradation``: synthfaces with
``[data] quality = true``), on all pairs of test images (:func:`evaluations.all_pairs`): Spearman's
rho between feature norm and degradation; error-versus-reject curves by feature norm (with a bootstrap
band on each method's first seed), at random and by the true degradation; the threshold drift between
the two identity halves; and QMagFace fitted on one half, tested on the other. :func:`finish` saves
them in ``RUN/stats/quality.json``; the report reads that file and computes nothing (minutes per method
on 2 cores for all-pairs ERCs). Run directories written before it existed are computed at render time.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

import evaluations
from mlcompare.run import pairs as evaluate_pairs
from mlcompare.run.rundir import curves_path, write_text_atomic

PATH = Path("stats") / "quality.json"  # in the run directory
FMRS = (1e-2, 1e-3)
DRIFT_FMR = 1e-3
BOOTSTRAP = 30  # resamples for the band on each method's first-seed curve
RANDOM_REPEATS = 5


def per_seed(c: dict[str, np.ndarray], *, bootstrap: int) -> dict:
    """Everything the section shows for one method x seed."""
    norms, degradation, labels = c["feature_norms"], c["test_degradation"], c["test_labels"]
    pairs = evaluations.all_pairs(c["test_embeddings"], labels)
    s, y, ia, ib = pairs["scores"], pairs["same"], pairs["index_a"], pairs["index_b"]
    out: dict = {"spearman": float(scipy_stats.spearmanr(norms, degradation).statistic),
                 "n_genuine": int(y.sum()), "n_impostor": int((~y).sum())}
    for fmr in FMRS:
        out[("norm", fmr)] = evaluations.erc(s, y, norms[ia], norms[ib], fmr=fmr, bootstrap=bootstrap)
        out[("random", fmr)] = evaluations.erc_random(s, y, fmr=fmr, repeats=RANDOM_REPEATS)
        out[("oracle", fmr)] = evaluations.erc(s, y, -degradation[ia], -degradation[ib], fmr=fmr)
    pick_a, pick_b = evaluate_pairs.identity_halves(labels, ia, ib)
    threshold = evaluations.calibrate_threshold(s[pick_a], y[pick_a], DRIFT_FMR)
    out["drift_own"] = evaluations.operating_point(s[pick_a], y[pick_a], threshold)
    out["drift_other"] = evaluations.operating_point(s[pick_b], y[pick_b], threshold)
    q = evaluate_pairs.qmagface_on_halves(s, y, norms[ia], norms[ib], pick_a, pick_b, [DRIFT_FMR])
    out["qmagface"] = {"alpha": q["alpha"], "beta": q["beta"], "plain": q["rows"][0]["fnmr_plain"],
                       "corrected": q["rows"][0]["fnmr_qmagface"]}
    return out



Key = tuple[str, int, int]  # method, training seed, fold (0: no cross-validation)


def compute(curves: dict[Key, dict[str, np.ndarray]], *, bootstrap: int = BOOTSTRAP) -> dict[Key, dict]:
    """:func:`per_seed` of every curves file that holds ground truth; the bootstrap band on each method's
    first (fold, seed), the one the report draws."""
    keys = sorted((k for k, c in curves.items() if "test_degradation" in c), key=lambda k: (k[2], k[1]))
    first: dict[str, Key] = {}
    for key in keys:
        first.setdefault(key[0], key)
    return {key: per_seed(curves[key], bootstrap=bootstrap if first[key[0]] == key else 0) for key in keys}


def finish(run_dir: Path, results: Any, *, quality: bool) -> Path | None:
    """Compute the quality statistics of a finished run's 'ok' rows (``results``: its results.csv
    frame) and save them in ``run_dir / PATH``; None when the comparison did not ask (``quality``)."""
    if not quality or results.empty:
        return None
    curves: dict[Key, dict[str, np.ndarray]] = {}
    for row in results[results.status == "ok"].itertuples():
        fold = int(getattr(row, "fold", 0) or 0)
        path = curves_path(run_dir, row.method, int(row.seed), fold)
        if path.is_file():
            with np.load(path) as npz:
                if "test_degradation" in npz.files:
                    curves[(row.method, int(row.seed), fold)] = {k: npz[k] for k in npz.files}
    out = run_dir / PATH
    out.parent.mkdir(exist_ok=True)
    entries = [{"method": m, "seed": s, "fold": f, "values": _encode(v)} for (m, s, f), v in compute(curves).items()]
    write_text_atomic(out, json.dumps(entries))
    return out


def load(run_dir: Path) -> dict[Key, dict] | None:
    """The saved statistics by (method, training seed, fold), or None when the run has no such file."""
    path = run_dir / PATH
    if not path.is_file():
        return None
    return {(e["method"], int(e["seed"]), int(e["fold"])): _decode(e["values"]) for e in json.loads(path.read_text())}


def by_replicate(inputs: Any) -> tuple[dict[tuple[str, int], dict], list[str], dict[str, list[int]]] | None:
    """The statistics of a run (``inputs``: its :class:`mlcompare.run.saved.RunInputs`) keyed as the
    report draws them, by (method, replicate), with the methods in results order and each one's
    replicates; None where the comparison did not ask for them or no curves file holds ground truth.
    Read from ``stats/quality.json``; a run directory written before it existed has them computed here
    (minutes on all pairs)."""
    if not inputs.config.get("data", {}).get("quality"):  # asked for by the comparison ([data] quality = true)
        return None
    results = inputs.results[inputs.results.status == "ok"]
    keys = [(r.method, int(r.seed)) for r in results.itertuples()
            if "test_degradation" in inputs.curves[(r.method, int(r.seed))]]
    if not keys:
        return None
    methods = list(dict.fromkeys(m for m, _ in keys))
    seeds = {m: sorted(s for mm, s in keys if mm == m) for m in methods}
    per = _saved(inputs, keys)
    if per is None:
        per = {(m, s): per_seed(inputs.curves[(m, s)], bootstrap=BOOTSTRAP if s == seeds[m][0] else 0) for m, s in keys}
    return per, methods, seeds


def _saved(inputs: Any, keys: list[tuple[str, int]]) -> dict | None:
    """The saved statistics by the report's (method, replicate) keys; None when the run has none for them."""
    if inputs.quality is None:
        return None
    rows = inputs.results[inputs.results.status == "ok"]
    train_seed = rows.train_seed if "train_seed" in rows else rows.seed  # under cross-validation seed is the replicate
    fold = rows.fold if "fold" in rows else [0] * len(rows)
    saved_key = {(m, int(s)): (m, int(t), int(f)) for m, s, t, f in zip(rows.method, rows.seed, train_seed, fold)}
    if any(saved_key.get(k) not in inputs.quality for k in keys):
        return None
    return {k: inputs.quality[saved_key[k]] for k in keys}


def _encode(value: Any) -> Any:
    """JSON of :func:`per_seed`'s result: arrays as lists, ``(kind, fmr)`` keys as ``"kind@fmr"``."""
    if isinstance(value, dict):
        return {(f"{k[0]}@{k[1]!r}" if isinstance(k, tuple) else k): _encode(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: dict) -> dict:
    return {(tuple((k.split("@")[0], float(k.split("@")[1]))) if "@" in k else k): v for k, v in value.items()}
