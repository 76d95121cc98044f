"""The report's tuning section, from ``tuning/trials.csv`` and the ``setting`` rows of results.csv.

Per method: the chosen setting beside the default, the trials (complete / pruned / failed) and their
cost; default against tuned test scores with the paired t-test over seeds; the validation objective
of every trial (optimisation history); and whether the validation objective predicts the test score
of the final models. A second section ranks the tuned settings alone (tuned against tuned, paired
over seeds against the best), and says which family wins once every method is tuned.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mlcompare.config.search_space import Dim, EDGE_SHARE, at_edges  # noqa: E402
from mlcompare.report.section import Figure, Section  # noqa: E402
from mlcompare.report.style import Styles  # noqa: E402
from mlcompare.report.text import p_text, plural, versus_best  # noqa: E402
from mlcompare.run import stats  # noqa: E402


def section(run: Path, results: pd.DataFrame, styles: Styles, figures: Path, tests: dict) -> Section | None:
    """The tuning section of a ``mlcompare tune`` run; None for a plain run (no ``tuning/trials.csv``).
    ``styles``: each method's colour and marker, as in the report's other figures; ``tests``: the run's
    tests (:mod:`mlcompare.run.comparison_tests`)."""
    path = run / "tuning" / "trials.csv"
    if not path.exists() or "setting" not in results:
        return None
    trials = pd.read_csv(path, keep_default_na=False, na_values=[""])
    config = json.loads((run / "config.json").read_text())
    objective = config["tuning"]["objective"]
    spaces = _spaces(run)
    edged: list[str] = []
    ok = results[results.status == "ok"]
    header = ["Method", "Default setting", "Tuned setting", f"Validation {objective}: default → tuned",
              f"Test {objective}: default → tuned", "Paired t (seeds)", "Trials (pruned, failed)", "Tuning s"]
    rows, points = [], []
    for method, group in trials.groupby("method", sort=False):
        first = group[group.trial == 0]
        complete = group[group.state == "complete"]
        best = complete.loc[complete["mean"].idxmax()] if len(complete) else None
        default = ok[(ok.method == method)].set_index("seed")[objective]
        tuned = ok[(ok.method == f"{method}-tuned")].set_index("seed")[objective]
        p = tests["tuning"]["tuned_vs_default"][method].p
        val_default = float(first["mean"].iloc[0]) if len(first) else math.nan
        val_tuned = float(best["mean"]) if best is not None else math.nan
        edges = at_edges(json.loads(best.params), spaces.get(method, {})) if best is not None else {}
        edged += [f"{method} {name}" for name in edges]
        rows.append([method, _setting(first.params.iloc[0]) if len(first) else "-",
                     _setting(best.params, edges) if best is not None else "no trial completed",
                     f"{val_default:.3f} → {val_tuned:.3f}", f"{_mean(default)} → {_mean(tuned)}",
                     "n/a" if math.isnan(p) else p_text(p) + (" n.s." if p >= stats.ALPHA else ""),
                     f"{len(group)} ({(group.state == 'pruned').sum()}, {(group.state == 'failed').sum()})",
                     f"{group.seconds.sum():.0f}"])
        points += [(method, "default", val_default, default.mean()), (method, "tuned", val_tuned, tuned.mean())]
    t = config["tuning"]
    text = [f"Every method had the same search: {t['trials']} trials (its own setting first, then Optuna's TPE, "
            f"seeded), each trained on {t['folds'] - 1} of {t['folds']} identity-disjoint folds of the training "
            f"identities and scored by {objective} on the held-out fold, for each fold (the objective is the mean)"
            + ("; trials below the median of completed ones at the same fold were pruned" if t["prune"] else "")
            + ". The test identities were never seen while tuning. Each method's default and best settings were then "
              f"retrained on all training identities over {plural(config['seeds'], 'seed')} and tested; the paired t-test "
              "compares tuned with default over seeds."]
    if edged:
        text.append(f"At a range edge (within {EDGE_SHARE:.0%} of its width from an end, in log space for log "
                    f"dimensions): {', '.join(edged)}. There the search may have stopped at its own boundary and the "
                    "best setting lie beyond it: widen the range ([methods.search]) and tune again.")
    text += _workers_and_steps(trials, config)
    figures_out = [f for f in (_history(trials, objective, styles, figures),
                               _predictive(points, objective, styles, figures)) if f]
    rho = tests["tuning"]["validation_rho"]
    if not math.isnan(rho):
        text.append(f"Validation against test {objective} of the final models: Spearman rho = {rho:.2f} over "
                    f"{tests['tuning']['validation_points']} settings (is the validation objective predictive here?).")
    return Section("Tuning", text, header, rows, figures_out)


def ranking(run: Path, results: pd.DataFrame, tests: dict) -> Section | None:
    """Tuned against tuned: every method's tuned rows ranked by mean test objective, each paired over
    seeds against the best (the same seed: the same initial backbone and batches), and the best of
    each family; None for a plain run."""
    if not (run / "tuning" / "trials.csv").exists() or "setting" not in results:
        return None
    objective = json.loads((run / "config.json").read_text())["tuning"]["objective"]
    tuned = results[(results.status == "ok") & (results.setting == "tuned")]
    if tuned.empty:
        return None
    by_method = {m: g.set_index("seed") for m, g in tuned.groupby("method", sort=False)}
    order = sorted(by_method, key=lambda m: -by_method[m][objective].mean())
    best = by_method[order[0]]
    shown = [c for c in ("accuracy", "tar_far_1e-3", "rank_1", "map_at_r") if c in tuned and c != objective]
    differences = tests["tuning"]["ranking"]
    rows = []
    for m in order:
        g = by_method[m]
        rows.append([m.removesuffix("-tuned"), g.family.iloc[0], _mean(g[objective]), versus_best(differences.get(m))]
                    + [_mean(g[c]) for c in shown])
    families = {}
    for m in order:  # order is best first: the first method seen of a family is its best
        families.setdefault(by_method[m].family.iloc[0], m)
    verdict = "; ".join(f"{fam}: {m.removesuffix('-tuned')} ({by_method[m][objective].mean():.3f})" for fam, m in families.items())
    text = [f"The tuned settings alone, ranked by test {objective} (mean ± std over seeds); each against the best, "
            f"paired over seeds: the difference in {objective} (method − best) with its 95% confidence interval over "
            f"seeds and the paired t-test's p, Holm-corrected for the {plural(len(order) - 1, 'comparison')} with the "
            f"best (\"tie\": not significant at {stats.ALPHA:g}). Best tuned method of each family: {verdict}."]
    return Section("Tuned against tuned", text, ["Method", "Family", f"Test {objective}", "vs best (paired)"] + shown, rows)


def _workers_and_steps(trials: pd.DataFrame, config: dict) -> list[str]:
    """Who ran the trials (several workers: the sampled settings depend on which finished first) and,
    with multi-fidelity pruning, the training steps each method spent of its budget."""
    if "worker" not in trials:  # a run from before workers were recorded
        return []
    workers, hosts = trials.worker.nunique(), trials.host.nunique()
    text = [f"Trials were run by {plural(workers, 'worker')} on {plural(hosts, 'host')}"
            + (": one worker samples each setting from the trials before it, so the search repeats exactly; with "
               "several, a setting depends on which trials had finished when it was sampled." if workers == 1 else
               "; with several workers a setting depends on which trials had finished when it was sampled, so the "
               "search does not repeat trial for trial (the budget does).")]
    tuning = config["tuning"]
    if tuning.get("multifidelity", "off") != "off":
        budget = tuning["trials"] * tuning["folds"] * config["train"]["steps"]
        spent = "; ".join(f"{m} {int(g.steps.sum())} ({(g.state == 'pruned').sum()} of {len(g)} trials pruned)"
                          for m, g in trials.groupby("method", sort=False))
        text.append(f"Multi-fidelity ({tuning['multifidelity']}, the objective measured every {tuning['eval_every']} "
                    f"steps): each method's budget was {budget} training steps; training steps spent: {spent}.")
    return text


def _setting(params: str, edges: dict[str, str] | None = None) -> str:
    """A trial's parameters, ``k=v`` sorted by name; a value in ``edges`` marked with the edge it sits at."""
    values, edges = json.loads(params), edges or {}
    return " ".join((f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}") + (f" (at the {edges[k]})" if k in edges else "")
                    for k, v in sorted(values.items()))


def _spaces(run: Path) -> dict[str, dict[str, Dim]]:
    """Each method's searched ranges (``tuning/space.json``; empty for runs tuned before it was written)."""
    path = run / "tuning" / "space.json"
    if not path.exists():
        return {}
    return {method: {k: Dim(**d) for k, d in dims.items()} for method, dims in json.loads(path.read_text()).items()}


def _mean(series: pd.Series) -> str:
    if series.empty:
        return "n/a"
    return f"{series.mean():.3f}" + (f" ± {series.std(ddof=1):.3f}" if len(series) > 1 else "")


def _history(trials: pd.DataFrame, objective: str, styles: Styles, out: Path) -> Figure | None:
    if trials.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, group in trials.groupby("method", sort=False):
        group = group.sort_values("trial")
        colour, marker = styles[method]
        ax.plot(group.trial, group["mean"].where(group.state == "complete"), marker, color=colour, label=method)
        ax.plot(group.trial, group["mean"].where(group.state == "complete").cummax(), "-", color=colour, alpha=0.6)
        pruned = group[group.state == "pruned"]
        ax.plot(pruned.trial, pruned["mean"], "x", color=colour)
    ax.set_xlabel("trial (0: the comparison's own setting)")
    ax.set_ylabel(f"validation {objective} (mean over folds)")
    ax.set_title("Optimisation history (dots: trials, lines: best so far, x: pruned)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ("Optimisation history", f"Validation {objective} of every trial of every method, with each method's "
            "best so far; the same number of trials for each.", _save(fig, out / "tuning_history.png"))


def _predictive(points: list[tuple[str, str, float, float]], objective: str, styles: Styles,
                out: Path) -> Figure | None:
    """Validation against test objective of each method's default (hollow) and tuned (filled) setting,
    joined by a line; methods told apart by colour and marker in a legend (labels on the points
    overlap where two methods land close together)."""
    finite = [p for p in points if math.isfinite(p[2]) and math.isfinite(p[3])]
    if not finite:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method in dict.fromkeys(p[0] for p in finite):
        mine = [p for p in finite if p[0] == method]
        xs, ys = [p[2] for p in mine], [p[3] for p in mine]
        colour, marker = styles[method]
        ax.plot(xs, ys, "-", color=colour, alpha=0.5)
        for (_, setting, x, y) in mine:
            ax.plot(x, y, marker, color=colour, markersize=7, fillstyle="full" if setting == "tuned" else "none",
                    label=method if setting == "tuned" else None)
    ax.set_xlabel(f"validation {objective} (folds of the training identities)")
    ax.set_ylabel(f"test {objective} (mean over seeds)")
    ax.set_title("Is the validation objective predictive? (hollow: default, filled: tuned)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ("Validation against test", "Each method's default and tuned settings: the objective on the validation "
            "folds against the test score of the retrained models.", _save(fig, out / "tuning_validation_test.png"))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
