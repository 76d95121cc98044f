"""Every test between methods that a report shows, computed once when the run finishes.

The run saves them in ``RUN/stats/tests.json`` (beside the quality statistics); the report reads that
file and draws, computing nothing. What is tested (each a paired comparison over seeds, or over
seed x fold replicates under cross-validation, see :mod:`mlcompare.run.stats`):

- ``versus_best``: every trained method against the best one by the comparison's primary metric,
  Holm-corrected over all of them (the results table's "vs best" and the summary sentence);
- ``benchmarks``: per benchmark, the best method of each family (classification; pair and proxy
  losses) against each other, by benchmark accuracy;
- ``tuning`` (``mlcompare tune``): tuned against default per method, the tuned settings against the
  best tuned one (Holm-corrected), and the rank correlation of validation and test objective;
- ``quality``: AUC-ERC by feature norm between every two methods, and QMagFace against the plain score;
- ``sweep`` (a comparison that sweeps a method field, such as ``train_identities``): at each swept
  value, every method group against the best group at that value, Holm-corrected within the value
  (the question a sweep asks is "which is best here, and does that change?", which "vs best" over
  all rows does not answer).

Run directories written before this file existed have their tests computed at render time by the
same functions (:func:`compute`), so every report shows the same numbers either way.
"""
from __future__ import annotations

import hashlib
import json
import math
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from mlcompare.run import quality_stats, stats
from mlcompare.run.rundir import write_text_atomic

PATH = Path("stats") / "tests.json"  # in the run directory
VERSION = 2  # what compute() returns; a tests.json of another version is computed again (2: ``sweep``)
# the two sides of the comparison: proxy losses (ProxyAnchor, SoftTriple) count as metric learning
SIDES = {"classification": ("classification",), "pair": ("pair", "proxy")}
QUALITY_FMR = quality_stats.FMRS[-1]  # the FMR at which the quality section tests AUC-ERC (its strictest)


def primary_metric(config: dict) -> str:
    """The comparison's primary metric; runs written before ``[report]`` existed rank by accuracy."""
    return config.get("report", {}).get("primary", "accuracy")


def best_trained(results: pd.DataFrame, primary: str) -> str | None:
    """The trained method (not raw pixels, not wholly failed) with the best mean ``primary`` over its
    successful seeds; ties go to the first in results.csv order (as the report's table sorts)."""
    ok = results[(results.status == "ok") & (results.family != "baseline")]
    means = ok.groupby("method", sort=False)[primary].apply(lambda v: pd.to_numeric(v, errors="coerce").mean()).dropna()
    if means.empty:
        return None
    return str(means.sort_values(ascending=False, kind="stable").index[0])


def versus_best(results: pd.DataFrame, primary: str) -> tuple[str | None, dict[str, stats.Difference]]:
    """The best trained method and every other trained method's difference to it in ``primary``
    (method − best over their common seeds, Holm-corrected over all; :func:`mlcompare.run.stats.versus_best`)."""
    best = best_trained(results, primary)
    if best is None:
        return None, {}
    ok = results[(results.status == "ok") & (results.family != "baseline") & results[primary].notna()]
    scores = {m: dict(zip(g.seed.astype(int), pd.to_numeric(g[primary]))) for m, g in ok.groupby("method", sort=False)}
    return best, stats.versus_best(scores, best)


def within_sweep(results: pd.DataFrame, sweep: str, primary: str) -> dict[str, dict[str, Any]]:
    """Per value of the swept column ``sweep`` (keys: the value as text, in ascending order): the best
    method group there by ``primary`` and every other group's difference to it (:func:`versus_best`
    on that value's rows, so Holm-corrected over the groups at that value)."""
    trained = results[(results.family != "baseline") & results[sweep].notna()]
    values = sorted(trained[sweep].unique(), key=lambda v: (pd.to_numeric(v, errors="coerce"), str(v)))
    out = {}
    for value in values:
        rows = trained[trained[sweep] == value]
        best, differences = versus_best(rows.assign(method=rows.group), primary)
        if best is not None:
            out[value_text(value)] = {"best": best, "versus_best": differences}
    return out


def value_text(value: Any) -> str:
    """A swept value as the tests and the report name it: ``100.0`` and ``"100"`` are both ``100``."""
    number = pd.to_numeric(value, errors="coerce")
    return f"{number:g}" if pd.notna(number) else str(value)


def benchmark(results: pd.DataFrame, bench: str) -> dict[str, Any] | None:
    """On ``bench``: the best method of each side by mean accuracy, ``winner`` first, and the paired
    difference of winner − loser over their common replicates; None unless both sides ran."""
    ok = results[results.status == "ok"]
    column = f"{bench}.accuracy"
    means = ok.groupby("method")[column].mean()
    family = ok.groupby("method").family.first()
    best = {}
    for side, families in SIDES.items():
        candidates = means[family.isin(families)].dropna()
        if not candidates.empty:
            best[side] = candidates.idxmax()
    if len(best) < 2:
        return None
    winner, loser = sorted(best.values(), key=lambda m: -means[m])
    a = ok[ok.method == winner].set_index("seed")[column]
    b = ok[ok.method == loser].set_index("seed")[column]
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    side = {m: s for s, m in best.items()}
    return {"winner": winner, "loser": loser, "winner_side": side[winner], "loser_side": side[loser],
            "winner_mean": float(means[winner]), "loser_mean": float(means[loser]),
            "difference": stats.paired_difference(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy())}


def tuning(results: pd.DataFrame, trials: pd.DataFrame, objective: str) -> dict[str, Any]:
    """A tune's tests: per method, tuned against default over seeds (``tuned_vs_default``); the tuned
    settings against the best tuned one (``ranking``: best and differences); and Spearman's rho of
    validation against test objective over the default and tuned settings (``validation_rho``, NaN
    where fewer than 3 settings or no spread)."""
    ok = results[results.status == "ok"]
    versus_default, points = {}, []
    for method, group in trials.groupby("method", sort=False):
        default = ok[ok.method == method].set_index("seed")[objective]
        tuned = ok[ok.method == f"{method}-tuned"].set_index("seed")[objective]
        common = default.index.intersection(tuned.index)
        versus_default[method] = stats.paired_difference(tuned[common].to_numpy(), default[common].to_numpy())
        first = group[group.trial == 0]
        complete = group[group.state == "complete"]
        points += [(float(first["mean"].iloc[0]) if len(first) else math.nan, default.mean()),
                   (float(complete["mean"].max()) if len(complete) else math.nan, tuned.mean())]
    finite = [(v, s) for v, s in points if math.isfinite(v) and math.isfinite(s)]
    rho = math.nan
    if len(finite) >= 3 and len({v for v, _ in finite}) > 1 and len({s for _, s in finite}) > 1:
        rho = float(spearmanr([v for v, _ in finite], [s for _, s in finite]).statistic)
    tuned_rows = ok[ok.setting == "tuned"] if "setting" in ok else ok.iloc[:0]
    by_method = {m: g.set_index("seed") for m, g in tuned_rows.groupby("method", sort=False)}
    ranking_best, ranking = None, {}
    if by_method:
        ranking_best = sorted(by_method, key=lambda m: -by_method[m][objective].mean())[0]
        ranking = stats.versus_best({m: g[objective].dropna().to_dict() for m, g in by_method.items()}, ranking_best)
    return {"tuned_vs_default": versus_default, "ranking_best": ranking_best, "ranking": ranking,
            "validation_points": len(finite), "validation_rho": rho}


def quality(per: dict[tuple[str, int], dict], methods: list[str], seeds: dict[str, list[int]]) -> dict[str, Any]:
    """From the quality statistics (``per``: (method, seed) -> :func:`mlcompare.run.quality_stats.per_seed`):
    AUC-ERC by feature norm at :data:`QUALITY_FMR`, A − B for every two methods over their common seeds
    (``pairs``), and QMagFace's corrected − plain FNMR per method (``qmagface``)."""
    pairs = []
    for a, b in combinations(methods, 2):
        common = sorted(set(seeds[a]) & set(seeds[b]))
        va = np.array([per[(a, s)][("norm", QUALITY_FMR)]["auc"] for s in common])
        vb = np.array([per[(b, s)][("norm", QUALITY_FMR)]["auc"] for s in common])
        pairs.append({"a": a, "b": b, "difference": stats.paired_difference(va, vb)})
    qmag = {}
    for m in methods:
        q = [per[(m, s)]["qmagface"] for s in seeds[m]]
        qmag[m] = stats.paired_difference(np.array([x["corrected"] for x in q]), np.array([x["plain"] for x in q]))
    return {"pairs": pairs, "qmagface": qmag}


def compute(run: Path, inputs: Any) -> dict[str, Any]:
    """Every test of the run at ``run`` (``inputs``: its :class:`mlcompare.run.saved.RunInputs`)."""
    config, results = inputs.config, inputs.results
    primary = primary_metric(config)
    best, differences = versus_best(results, primary)
    out: dict[str, Any] = {"primary": primary, "best": best, "versus_best": differences,
                           "benchmarks": {b["name"]: benchmark(results, b["name"]) for b in config.get("benchmarks", [])}}
    trials_path = run / "tuning" / "trials.csv"
    if trials_path.is_file() and "setting" in results:
        trials = pd.read_csv(trials_path, keep_default_na=False, na_values=[""])
        out["tuning"] = tuning(results, trials, config["tuning"]["objective"])
    per = quality_stats.by_replicate(inputs)
    if per is not None:
        out["quality"] = quality(*per)
    sweep = config.get("sweep", "")
    if sweep and sweep in results and "group" in results:  # a params.NAME sweep has no column: not tested
        out["sweep"] = within_sweep(results, sweep, primary)
    return out


def finish(run: Path, inputs: Any) -> Path:
    """Compute the run's tests and save them in ``run / PATH``, with the SHA-256 of the results.csv
    they were computed from."""
    out = run / PATH
    out.parent.mkdir(exist_ok=True)
    saved = {"results_sha256": _digest(run), "version": VERSION} | _encode(compute(run, inputs))
    write_text_atomic(out, json.dumps(saved, indent=1))
    return out


def load(run: Path) -> dict[str, Any] | None:
    """The saved tests; None for a run directory written before they were saved, by code that saved
    other tests (another :data:`VERSION`), or whose results.csv has changed since (then they are
    computed again from the results as they are)."""
    path = run / PATH
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.pop("results_sha256", None) != _digest(run) or saved.pop("version", 1) != VERSION:
        return None
    return _decode(saved)


def _digest(run: Path) -> str:
    return hashlib.sha256((run / "results.csv").read_bytes()).hexdigest()


def _encode(value: Any) -> Any:
    if isinstance(value, stats.Difference):
        return {"__difference__": [value.mean, value.low, value.high, value.p, value.n, value.p_holm]}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__difference__"}:
            mean, low, high, p, n, p_holm = value["__difference__"]
            return stats.Difference(mean, low, high, p, int(n), p_holm)
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
