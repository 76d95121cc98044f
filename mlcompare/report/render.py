"""Render a run directory's results as ``report.md`` (+ PNG figures) and a self-contained ``report.html``.

Rendering reads only what the run saved (config.json, results.csv, history.csv, curves/,
test_labels_sample.npy), checked first by :mod:`mlcompare.run.saved`, so ``mlcompare report
RUN_DIR`` re-renders without training and refuses a damaged run rather than drawing it.
"""
from __future__ import annotations

import base64
import html
import math
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are rendered headless, the same on every machine
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mlcompare.config.results_schema import ALWAYS, MEASURED, METRICS  # noqa: E402
from mlcompare.errors import UserError  # noqa: E402
from mlcompare.report import benchmarks, quality  # noqa: E402
from mlcompare.report import text as report_text  # noqa: E402
from mlcompare.report import tuning as report_tuning  # noqa: E402
from mlcompare.report import sweep as report_sweep  # noqa: E402
from mlcompare.report.section import Figure, Section, html_figure, md_text  # noqa: E402
from mlcompare.report.style import LINES, Styles, method_styles  # noqa: E402
from mlcompare.run import comparison_tests, saved, stats  # noqa: E402

# (column, header, digits) of the summary table, from the results schema: the metrics always shown,
# then the cost columns; OPTIONAL_COLUMNS are shown when measured (P@1 only with R-Precision)
COLUMNS = [(m.name, m.header, 3) for m in METRICS if m.table == ALWAYS] + [("images_per_s", "img/s", 0),
                                                                          ("train_seconds", "train s", 0)]
OPTIONAL_COLUMNS = [(m.name, m.header, 3) for m in METRICS if m.table == MEASURED]
FAMILY_NAMES = {"classification": "margin-softmax classification", "pair": "metric learning",
                "proxy": "proxy-based metric learning", "baseline": "baseline"}


def columns(results: pd.DataFrame) -> list[tuple[str, str, int]]:
    """The table's metric columns: the fixed ones and the optional ones this run measured."""
    measured = {c for c, _, _ in OPTIONAL_COLUMNS if c in results and results[c].notna().any()}
    if "r_precision" not in measured:
        measured.discard("precision_at_1")
    extra = [c for c in OPTIONAL_COLUMNS if c[0] in measured]
    metrics = sum(1 for m in METRICS if m.table == ALWAYS)
    return COLUMNS[:metrics] + extra + COLUMNS[metrics:]


def summarise(results: pd.DataFrame, primary: str = "accuracy", tests: dict | None = None) -> pd.DataFrame:
    """One row per method, trained methods best first by ``primary`` (the comparison's primary
    metric), then raw pixels, then failed methods: mean and std
    over seeds of every metric (successful runs only), and each method's difference to the best
    (``versus``: a :class:`~mlcompare.run.stats.Difference`, None for the best; ``vs_best``: its text)."""
    ok = results[results.status == "ok"]
    rows = []
    for method, group in results.groupby("method", sort=False):
        good = ok[ok.method == method]
        row = {"method": method, "family": group.family.iloc[0], "loss": group.loss.iloc[0],
               "params": str(group.params.iloc[0]) if "params" in group and pd.notna(group.params.iloc[0]) else "",
               "seeds_ok": len(good), "seeds": len(group),
               "status": "ok" if len(good) == len(group) else ("failed" if good.empty else "partly failed"),
               "message": "; ".join(m for m in group.message.astype("string").fillna("") if m)}
        for col, _, _ in columns(results):
            values = pd.to_numeric(good[col], errors="coerce") if col in good else pd.Series(dtype=float)
            row[col] = values.mean() if len(values) else math.nan
            row[col + "_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    # trained methods best first, then raw pixels (the floor, not a contender), then failed ones
    order = sorted(range(len(table)), key=lambda i: (table.status[i] == "failed", table.family[i] == "baseline",
                                                     -table[primary][i] if pd.notna(table[primary][i]) else math.inf))
    table = table.iloc[order].reset_index(drop=True)
    if tests is None:  # e.g. constructed results; a run's report reads the tests saved when it finished
        best, differences = comparison_tests.versus_best(results, primary)
    else:
        best, differences = tests["best"], tests["versus_best"]
    return table.join(versus_best(table, best, differences), on="method")


def versus_best(table: pd.DataFrame, best: str | None, differences: dict[str, stats.Difference]) -> pd.DataFrame:
    """Per method: ``versus`` (its difference to the ``best`` trained method, from ``differences``:
    :func:`mlcompare.run.comparison_tests.versus_best`) and ``vs_best``, its text. Raw pixels, with one seed
    and no training, is not compared."""
    out = pd.DataFrame({"vs_best": "", "versus": pd.Series([None] * len(table), dtype=object).to_numpy()},
                       index=pd.Index(table.method, name="method"))
    if best is None:
        return out
    out.loc[best, "vs_best"] = "best"
    for method, difference in differences.items():
        out.at[method, "versus"] = difference
        out.at[method, "vs_best"] = report_text.versus_best(difference)
    return out


def versus_note(primary: str, table: pd.DataFrame) -> str:
    """What the "vs best" column shows, under the table."""
    tested = sum(d is not None and d.n >= 2 for d in table.versus)
    text = (f"vs best: the difference in {report_text.metric_name(primary)} (this comparison's primary metric) to the "
            f"best trained method (method − best), mean over the seeds both ran")
    if not tested:
        return text + (" (one seed: no test between methods is possible, since the variation between training "
                       "runs is unknown; only the difference is shown).")
    return text + (f", with its 95% confidence interval over seeds (t; for this comparison alone, uncorrected, so it "
                   f"can exclude 0 in a tie) and the paired t-test's p, Holm-corrected for "
                   f"the {report_text.plural(tested, 'comparison')} with the best; \"tie\": not significant at "
                   f"{stats.ALPHA:g} after the correction.")


def _fmt(mean: float, std: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = f"{mean:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{digits}f}"
    return text


def summary_sentence(table: pd.DataFrame, primary: str = "accuracy", replicate: str = "seed") -> str:
    """The comparison's answer in one sentence, with numbers: the best method of each side by
    ``primary`` (named), and the claim between them only as far as the corrected test carries it.
    ``replicate``: what the test pairs over ("seed x fold" under cross-validation)."""
    ok = table[table.status != "failed"]  # best first by primary (summarise's order)
    best = {side: ok[ok.family.isin(fams)].head(1) for side, fams in comparison_tests.SIDES.items()}
    raw = ok[ok.family == "baseline"]
    others = [c for c in ("accuracy", "rank_1") if c != primary]

    def scores(r: pd.Series, named: bool = True) -> str:
        rest = ", ".join(f"{report_text.metric_name(c) + ' ' if named else ''}{r[c]:.3f}" for c in others)
        return f"{r[primary]:.3f} ({rest})"

    parts = []
    lead = f"By {report_text.metric_name(primary)} (this comparison's primary metric), "
    if not best["classification"].empty and not best["pair"].empty:
        c, p = best["classification"].iloc[0], best["pair"].iloc[0]
        winner, loser = (c, p) if not c[primary] < p[primary] else (p, c)
        parts.append(f"{lead}on held-out identities the best {FAMILY_NAMES[winner.family]} method ({winner.method}) "
                     f"reaches {scores(winner)}, against {scores(loser, False)} for the best "
                     f"{FAMILY_NAMES[loser.family]} method ({loser.method})")
        if loser.versus is not None:
            parts.append(report_text.difference_clause(winner.method, loser.method, primary, loser.versus,
                                                           replicate))
    else:
        fam = "classification" if not best["classification"].empty else "pair"
        if not best[fam].empty:
            b = best[fam].iloc[0]
            parts.append(f"{lead}the best method ({b.method}) reaches {scores(b)}")
    if not raw.empty:
        parts.append(f"raw pixels get {scores(raw.iloc[0], False)}")
    failed = table[table.status == "failed"].method.tolist()
    text = "; ".join(parts) + "."
    if failed:
        text += f" Failed: {', '.join(failed)} (see the table)."
    return text


Curves = dict[str, tuple[str, dict[str, np.ndarray]]]  # method -> (family, its first seed's curves)


def styles_of(results: pd.DataFrame) -> Styles:
    """Each method's and sweep group's (colour, marker), in results.csv order: the same in every figure."""
    return method_styles([*results.method, *(results.group.dropna() if "group" in results else ())])


def _figures(inputs: saved.RunInputs, table: pd.DataFrame, styles: Styles, out: Path) -> list[Figure]:
    """Every figure the run has data for, drawn into ``out``, in report order."""
    results, history = inputs.results, inputs.history
    curves: Curves = {}
    for row in results[results.status == "ok"].itertuples():  # the first seed's curves stand for the method
        curves.setdefault(row.method, (row.family, inputs.curves[(row.method, int(row.seed))]))
    drawn = [_scores(table, comparison_tests.primary_metric(inputs.config), styles, out),
             _sweep(results, saved.plotted_sweep(inputs.config), styles, out), _roc(curves, styles, out),
             _cmc(curves, styles, out), _loss_curves(history, out), _training_stats(history, styles, out),
             _angles(curves, out), _embeddings(curves, inputs.labels, out),
             _cost(results, inputs.config["device"], styles, out)]
    return [figure for figure in drawn if figure is not None]


def _line(styles: Styles, name: str, family: str) -> dict:
    """Keyword arguments of ``ax.plot`` that draw ``name`` as in every figure: its colour and marker
    (about ten markers along the line), the line style of its family."""
    colour, marker = styles[name]
    return {"color": colour, "marker": marker, "markevery": 0.1, "markersize": 5,
            "linestyle": LINES.get(family, "-"), "label": name}


def _roc(curves: Curves, styles: Styles, out: Path) -> Figure | None:
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, (family, c) in curves.items():
        ax.plot(c["fpr"], c["tpr"], **_line(styles, method, family))
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("Verification ROC (held-out identities)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ("ROC", "Verification ROC of every method (solid: classification, dashed: metric learning, dotted: raw pixels).",
            _save(fig, out / "roc.png"))


def _cmc(curves: Curves, styles: Styles, out: Path) -> Figure | None:
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, (family, c) in curves.items():
        cmc = c["cmc"][:20]
        ax.plot(np.arange(1, len(cmc) + 1), cmc, **_line(styles, method, family) | {"markevery": 1})
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_title("CMC (closed-set 1:N, one gallery image per identity)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ("CMC", "Cumulative match characteristic: the share of probes whose identity is within the top k.",
            _save(fig, out / "cmc.png"))


def _loss_curves(history: pd.DataFrame, out: Path) -> Figure | None:
    if history.empty:
        return None
    methods = list(dict.fromkeys(history.method))
    cols = min(3, len(methods))
    rows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        for seed, h in history[history.method == method].groupby("seed"):
            ax.plot(h.step, h.loss, label=f"seed {seed}")
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle("Training loss (each loss on its own scale)")
    return ("Loss curves", "Training loss per step for each method and seed.", _save(fig, out / "loss.png"))


STAT_TITLES = {"theta_target": "mean target angle (deg)", "theta_other": "mean non-target angle (deg)",
               "active_fraction": "share of active (non-zero loss) tuples",
               "val_accuracy": "verification accuracy on the test pairs"}


def _training_stats(history: pd.DataFrame, styles: Styles, out: Path) -> Figure | None:
    """One panel per statistic the losses logged besides the loss (angles in radians, drawn in degrees)."""
    stat_cols = [c for c in history.columns if c not in ("method", "seed", "step", "loss", "lr")]
    stat_cols.sort(key=lambda c: c != "val_accuracy")  # the validation curve first
    if not stat_cols:
        return None
    cols = min(3, len(stat_cols))
    rows = math.ceil(len(stat_cols) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3 * rows + 0.6), squeeze=False, layout="constrained")
    first_seed = history[history.seed == history.seed.min()]
    for ax, stat in zip(axes.flat, stat_cols):
        for method, h in first_seed.groupby("method", sort=False):
            h = h[h[stat].notna()]  # a stat logged on some steps only (val_accuracy) is one line
            if len(h):
                ax.plot(h.step, np.degrees(h[stat]) if stat.startswith("theta") else h[stat],
                        **_line(styles, method, "") | ({"markevery": 1} if len(h) < 15 else {}))
        ax.set_title(STAT_TITLES.get(stat, stat.replace("_", " ")), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(stat_cols):]:
        ax.axis("off")
    _legend_below(fig, axes)
    fig.suptitle("What each loss logged per step (first seed)")
    return ("Training statistics", "Per-step statistics the losses log: target and non-target angles of "
            "normalised losses (as in the ArcFace paper), the share of active tuples of pair losses, "
            "feature norms and scales where a loss has them.", _save(fig, out / "stats.png"))


def _legend_below(fig: plt.Figure, axes: np.ndarray) -> None:
    """One legend for all panels, below them (a legend per panel hides the lines of a crowded one);
    ``fig`` needs the constrained layout, which makes room for it."""
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 5), fontsize=8)


def _angles(curves: Curves, out: Path) -> Figure | None:
    """Target and non-target angle histograms of the methods that have class centres, on the bins
    each curves file was saved with."""
    angles = {m: c for m, (_, c) in curves.items() if "theta_target_hist" in c}
    if not angles:
        return None
    cols = min(4, len(angles))
    rows = math.ceil(len(angles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax, (method, c) in zip(axes.flat, angles.items()):
        edges = saved.theta_bins(c)
        centres = (edges[:-1] + edges[1:]) / 2
        for key, colour, label in (("theta_target_hist", "tab:blue", "target"), ("theta_other_hist", "tab:gray", "non-target")):
            counts = c[key].astype(float)
            ax.fill_between(centres, counts / max(counts.sum(), 1.0), step="mid", alpha=0.6, color=colour, label=label)
        ax.set_title(method, fontsize=9)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_yticks([])
        ax.set_xlabel("angle to class centre (deg)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(angles):]:
        ax.axis("off")
    fig.suptitle("Angles between training embeddings and class centres at the end of training", fontsize=10)
    return ("Angles", "Distribution of the angle between each training embedding and its own class "
            "centre (target) and the other centres (non-target), as in the ArcFace paper: a margin "
            "loss should push the target mass left and keep the non-target mass near 90 degrees.",
            _save(fig, out / "angles.png"))


def _embeddings(curves: Curves, labels: np.ndarray | None, out: Path) -> Figure | None:
    """PCA of each method's embedded test sample, one colour per identity of ``labels`` (the sample's
    identities, one label per embedding; :mod:`mlcompare.run.saved` checks they match)."""
    projected = {m: c["embeddings"] for m, (_, c) in curves.items() if "embeddings" in c}
    if not projected or labels is None:
        return None
    cols = min(4, len(projected))
    rows = math.ceil(len(projected) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (method, emb) in zip(axes.flat, projected.items()):
        x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        x = x - x.mean(axis=0)
        xy = x @ np.linalg.svd(x, full_matrices=False)[2][:2].T  # PCA to 2-D
        ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=10)
        ax.set_title(method, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(projected):]:
        ax.axis("off")
    fig.suptitle(f"Test embeddings of {len(np.unique(labels))} held-out identities\n"
                 "(PCA of the L2-normalised embeddings)", fontsize=10)
    return ("Embeddings", "2-D projection of the test embeddings of a few identities never seen in "
            "training, one colour per identity: tight, separate clusters are what verification needs.",
            _save(fig, out / "embeddings.png"))


def _cost(results: pd.DataFrame, device: str, styles: Styles, out: Path) -> Figure | None:
    trained = results[(results.status == "ok") & (results.family != "baseline")]
    if trained.empty:
        return None
    speed = trained.groupby("method", sort=False)[["images_per_s", "train_seconds"]].mean()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 0.4 * len(speed) + 1.5))
    y = np.arange(len(speed))
    colours = [styles[m][0] for m in speed.index]
    a1.barh(y, speed.images_per_s, color=colours)
    a1.set_yticks(y, speed.index)
    a1.invert_yaxis()
    a1.set_xlabel("training images / s")
    a2.barh(y, speed.train_seconds, color=colours)
    a2.set_yticks(y, [])
    a2.invert_yaxis()
    a2.set_xlabel("training wall time (s)")
    fig.suptitle(f"Cost on {device}")
    return ("Cost", "Throughput and wall time of each method's training (mean over seeds).", _save(fig, out / "cost.png"))


SWEEP_SCORES = tuple((name, report_text.metric_name(name)) for name in ("accuracy", "rank_1", "map_at_r"))


def _sweep(results: pd.DataFrame, sweep: str, styles: Styles, out: Path) -> Figure | None:
    """Verification accuracy, rank-1 and MAP@R against the swept factor (a results column, e.g.
    label_noise; empty: no figure), one line per method group; a log axis when the values span
    more than a decade (numbers of identities)."""
    if not sweep:
        return None
    good = results[(results.status == "ok") & (results.family != "baseline") & results[sweep].notna()]
    scores = [(c, name) for c, name in SWEEP_SCORES if c in good and good[c].notna().any()]
    fig, axes = plt.subplots(1, len(scores), figsize=(4.6 * len(scores), 4.2), squeeze=False)
    values = pd.to_numeric(good[sweep], errors="coerce")
    log = bool((values > 0).all() and values.max() >= 10 * values.min())
    for ax, (col, name) in zip(axes[0], scores):
        for group, g in good.groupby("group", sort=False):
            means = g.groupby(sweep)[col].agg(["mean", "std"]).reset_index()
            ax.errorbar(means[sweep], means["mean"], yerr=means["std"].fillna(0), capsize=3,
                        **_line(styles, group, g.family.iloc[0]) | {"markevery": 1})
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(sweep.replace("_", " "))
        ax.set_ylabel(name)
        ax.set_title(f"{name} against {sweep.replace('_', ' ')}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    shown = ", ".join(name for _, name in scores)
    return ("Sweep", f"{shown[0].upper() + shown[1:]} of each method as {sweep.replace('_', ' ')} varies "
            "(solid: classification, dashed: metric learning; whiskers: std over seeds).", _save(fig, out / "sweep.png"))


SCORE_PANELS = ("accuracy", "map_at_r", "rank_1")  # beside the primary metric, the first two others


def _scores(table: pd.DataFrame, primary: str, styles: Styles, out: Path) -> Figure | None:
    """A dot plot per score (the primary metric first): each method's mean over seeds with its 95%
    confidence interval over seeds, on an axis zoomed to the trained methods, so that the differences
    the report is about fill the panel; a method off the axis (raw pixels) is written at the nearer edge."""
    ok = table[table.status != "failed"]
    if ok.empty:
        return None
    metrics = [primary] + [m for m in SCORE_PANELS if m != primary][:2]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 0.32 * len(ok) + 1.4), sharey=True,
                             squeeze=False)
    y = np.arange(len(ok))
    for ax, metric in zip(axes[0], metrics):
        means = ok[metric].to_numpy(dtype=float)
        half = np.array([stats.half_width(sd, n) for sd, n in zip(ok[metric + "_std"], ok.seeds_ok)])
        shown = np.isfinite(means) & (ok.family != "baseline").to_numpy()
        shown = shown if shown.any() else np.isfinite(means)
        lo, hi = _zoom(means[shown], np.nan_to_num(half[shown]))
        for i, (method, m, h) in enumerate(zip(ok.method, means, half)):
            colour, marker = styles[method]
            if not np.isfinite(m):
                continue
            if not lo <= m <= hi:  # off the zoomed axis (raw pixels): its value at the nearer edge
                left = m < lo
                ax.text(lo if left else hi, i, f" \u2190 {m:.3f}" if left else f"{m:.3f} \u2192 ", va="center",
                        ha="left" if left else "right", fontsize=8, color=colour)
                continue
            ax.errorbar(m, i, xerr=h if np.isfinite(h) else None, fmt=marker, color=colour, capsize=3, markersize=6)
        ax.set_xlim(lo, hi)
        ax.set_title(report_text.metric_name(metric) + (" (primary)" if metric == primary else ""), fontsize=10)
        ax.grid(alpha=0.3, axis="x")
        ax.tick_params(axis="x", labelsize=8)
    axes[0][0].set_yticks(y, ok.method)
    axes[0][0].invert_yaxis()
    fig.suptitle("Mean over seeds with 95% CI over seeds (axes zoomed to the trained methods)", fontsize=10)
    names = ", ".join(report_text.metric_name(m) for m in metrics)
    return ("Scores", f"{names[0].upper() + names[1:]} per method, best first by {report_text.metric_name(primary)}: "
            "the mean over seeds and its 95% confidence interval over seeds (none with one seed); each axis spans "
            "the trained methods only, and a method off it (raw pixels) is written at the nearer edge.",
            _save(fig, out / "scores.png"))


def _zoom(means: np.ndarray, half: np.ndarray) -> tuple[float, float]:
    """Axis limits around ``means`` ± ``half``, with a margin of 15% of that span (at least 0.005) each
    side, kept within [-0.01, 1.01]: the scores drawn lie in [0, 1], even where a 2-seed interval does not."""
    lo, hi = float(np.min(means - half)), float(np.max(means + half))
    pad = max(0.15 * (hi - lo), 0.005)
    return max(lo - pad, -0.01), min(hi + pad, 1.01)


def _save(fig: plt.Figure, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # a constrained-layout figure has placed itself
        fig.tight_layout()
    fig.savefig(path, dpi=110)  # into the staging folder: render() swaps it in only once all is written
    plt.close(fig)
    return path


def render(run: Path, out: Path | None = None, *, force: bool = False) -> Path:
    """Write report.md, report.html and figures/ for the run in ``run`` (into ``out``, default ``run``).

    A damaged run (see :mod:`mlcompare.run.saved`) raises :class:`UserError` before anything is
    written, even with ``force``. A run that lacks rows config.json lists (unfinished, or results.csv
    cut at a row boundary) would give a worse report than a complete one: it replaces an existing
    ``out/report.md`` only with ``force``. Everything is written to a staging folder inside ``out``
    first and swapped in at the end, so a crash mid-render leaves the previous report as it was.
    """
    run = Path(run)
    out = Path(out) if out else run
    inputs = saved.load(run)
    missing = saved.missing_rows(inputs)
    if missing and (out / "report.md").exists() and not force:
        raise UserError(f"'{run / 'results.csv'}' lacks {len(missing)} method x seed row(s) of config.json "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): not replacing "
                        f"'{out / 'report.md'}' with a partial report; finish the run with --resume, or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        (staging / "figures").mkdir()
        # the tests saved when the run finished; a run directory written before they were saved: computed here
        tests = inputs.tests if inputs.tests is not None else comparison_tests.compute(run, inputs)
        table = summarise(inputs.results, comparison_tests.primary_metric(inputs.config), tests)
        styles = styles_of(inputs.results)
        figures = _figures(inputs, table, styles, staging / "figures")
        cols = columns(inputs.results)
        sections = [s for s in (benchmarks.section(inputs.config, inputs.results, styles, staging / "figures", tests),
                                report_tuning.section(run, inputs.results, styles, staging / "figures", tests),
                                report_tuning.ranking(run, inputs.results, tests),
                                report_sweep.section(inputs.config, inputs.results, tests)) if s is not None]
        sections += quality.sections(inputs, staging / "figures", tests)  # none for runs without ground truth
        (staging / "report.md").write_text(_markdown(inputs.config, table, figures, staging, cols, sections,
                                                     inputs.provenance))
        (staging / "report.html").write_text(_html(inputs.config, table, figures, cols, sections, inputs.provenance))
        if out.resolve() != run.resolve():  # the report folder holds what renders it again
            for name in saved.REPORT_FILES:
                if (run / name).is_file():
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(run / name, staging / name)
            for name in saved.REPORT_FOLDERS:
                if (run / name).is_dir():
                    shutil.copytree(run / name, staging / name)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _publish(staging: Path, out: Path) -> None:
    """Move the staged folders and files into ``out``: renames only, nothing left to compute or fail on.

    figures/ and curves/ are replaced as a whole (a figure the new report lacks must not linger); the
    old ones are moved into the staging folder, which the caller removes.
    """
    for folder in ("figures", *saved.REPORT_FOLDERS):
        if (staging / folder).exists():
            if (out / folder).exists():
                os.replace(out / folder, staging / f"{folder}.old")
            os.replace(staging / folder, out / folder)
    for name in (*saved.REPORT_FILES, "report.html", "report.md"):  # report.md last: it names the figures
        if (staging / name).exists():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)


def _backbone_text(config: dict) -> str:
    """The backbone's name and shape, and its size and cost where the run recorded them (runs written
    before backbones had names lack ``backbone.name`` and ``backbone_cost``: the ResNet, no cost)."""
    b, name = config["backbone"], config["backbone"].get("name", "resnet-face")
    text = (f"ResNet, widths {b['widths']}, blocks {b['blocks']}, " if name == "resnet-face" else f"{name}, ") \
        + f"{b['embedding_dim']}-d embedding"
    cost = config.get("backbone_cost")
    if cost:
        from mlcompare.backbones import count_text

        text += f"; {count_text(cost['parameters'])} parameters, {count_text(cost['flops'])} FLOPs per image"
    return text + (f"; started from {b['pretrained']}" if b.get("pretrained") else "")


SYNTHFACES_CAVEAT = ("Caveat: synthfaces is rendered by mlcompare. The shipped comparisons render it at difficulty 3, "
                     "calibrated so that quick's five methods rank as they do on CFP's real faces at quick's budget "
                     "(at difficulty 1 they did not); that its rankings transfer to other methods, budgets or "
                     "settings has not been shown (README, 'Does synthfaces predict real faces?').")


def _framing_text(data: dict) -> str:
    """How photographs were cropped and resized (config.json's [data]; older runs: squashed)."""
    crop, box = data.get("crop", 0.0), data.get("crop_box", [])
    parts = ([f"centre crop {report_text.sig(crop)} of the shorter side"] if crop else []) + (
        [f"crop box {box}"] if box else [])
    parts.append("aspect-preserving resize" if data.get("keep_aspect") else "resized to the square")
    return ", ".join(parts)


def _augmentation_text(train: dict) -> str:
    parts = (["horizontal flip"] if train.get("flip", True) else []) + (
        [f"random resized crop of {report_text.sig(train['random_crop'][0])}-{report_text.sig(train['random_crop'][1])} "
         "of the area"] if train.get("random_crop") else []) + (
        [f"colour jitter {report_text.sig(train['color_jitter'])}"] if train.get("color_jitter") else [])
    return ", ".join(parts) or "none"


def _setup_lines(config: dict, facts: dict | None = None) -> list[str]:
    """The setup in three lines, and the run's provenance (``facts``, see :mod:`mlcompare.run.provenance`) in
    two more; indexes only keys of :data:`saved.CONFIG_KEYS` (checked present), and reads with a
    default the keys older run directories lack."""
    d, b, t = config["data"], config["backbone"], config["train"]
    folds = config.get("folds", [])
    split = (f", cross-validated over {config['crossval']['benchmark']}'s identity-disjoint splits "
             f"{', '.join(str(f['fold']) for f in folds)} (fold k trains on the people outside split k, tests on split k)"
             if folds else f", tested on `{d['test']}`" if d["test"] else
             f", identities split {1 - d['test_fraction']:.0%} train / {d['test_fraction']:.0%} test (disjoint)")
    per_fold = " per fold" if folds else ""
    return [
        f"Data: `{d['train']}`" + split
        + f"; {config['train_identities']} training identities ({config['train_images']} images){per_fold}, "
          f"{config['test_identities']} test identities ({config['test_images']} images){per_fold}, {d['size']} px"
        + f" ({_framing_text(d)}); train-time augmentation: {_augmentation_text(t)}.",
        *([SYNTHFACES_CAVEAT] if d["train"].startswith("synthfaces") else []),
        *([f"Replicates: each seed x fold is one replicate ({report_text.plural(config['seeds'], 'seed')} x "
           f"{report_text.plural(len(folds), 'fold')}); wherever this report speaks of seeds (means, ± std, "
           "confidence intervals, paired tests), it means these replicates."] if folds else []),
        f"Protocol: 1:1 verification on {config['verification_pairs']} balanced pairs in 10 folds (accuracy: threshold "
        f"chosen on 9 folds, measured on the 10th); 1:N identification with one gallery image per test identity; MAP@R leave-one-out.",
        f"Fair by construction: every method trains the same backbone ({_backbone_text(config)}) "
        f"from the same initial weights per seed, on the same P x K batches "
        f"(P={t['p']}, K={t['k']}), with {t['optimizer']} lr {report_text.sig(t['lr'])} (warm-up {report_text.plural(t['warmup_steps'], 'step')} + cosine) "
        + (f"for {report_text.sig(t['epochs'])} epochs (each method's steps: ceil(epochs x its training images / (P x K)), "
           "in results.csv)" if t.get("epochs") else f"for {report_text.plural(t['steps'], 'step')}")
        + f", {report_text.plural(config['seeds'], 'seed')}, on {config['device']} in {t.get('precision', 'fp32')}"
        + (f", {config['world_size']} torchrun processes." if config.get("world_size", 1) > 1 else "."),
        *report_text.provenance_lines(facts),
    ]


Cell = tuple[str, float | None]  # (text, the number the HTML table sorts by, NaN: none; None: sort by text)


def _results_table(table: pd.DataFrame, cols: list[tuple[str, str, int]], primary: str) -> tuple[list[str], list[list[Cell]]]:
    """Header and rows of the results table, Markdown and HTML alike: method and family, then the
    primary metric and the comparison with the best, then every other metric, parameters and status."""
    first = [c for c in cols if c[0] == primary] + [c for c in cols if c[0] != primary]
    header = ["Method", "Family", first[0][1], f"vs best ({report_text.metric_name(primary)})",
              *(h for _, h, _ in first[1:]), "Loss (params)", "Status"]
    rows = []
    for r in table.to_dict("records"):
        metric = [(_fmt(r[c], r[c + "_std"], d), float(r[c])) for c, _, d in first]
        versus = r["versus"]
        rows.append([(r["method"], None), (FAMILY_NAMES.get(r["family"], r["family"]), None), metric[0],
                     (r["vs_best"], 0.0 if r["vs_best"] == "best" else (versus.mean if versus is not None else math.nan)),
                     *metric[1:], (report_text.round_numbers(f"{r['loss']} {r['params']}".strip()), None),
                     (r["status"] + (f": {r['message']}" if r["message"] else ""), None)])
    return header, rows


def _replicate(config: dict) -> str:
    """What one replicate of a paired test is: a seed, or under cross-validation a seed x fold."""
    return "seed x fold" if config.get("folds") else "seed"


def _markdown(config: dict, table: pd.DataFrame, figures: list[Figure], out: Path,
              cols: list[tuple[str, str, int]], sections: list[Section] = (), facts: dict | None = None) -> str:
    primary = comparison_tests.primary_metric(config)
    # every text from the run (names, messages, the config's words) through md_text: report.md may be opened
    # in a renderer that runs raw HTML, and a comparison file is untrusted
    lines = [f"# mlcompare report: {md_text(config['name'])}", "", md_text(config["description"]), "",
             *([f"*Question: {md_text(config['question'])}*", ""] if config.get("question") else []),
             f"**{md_text(summary_sentence(table, primary, _replicate(config)))}**", "", "## Setup", ""]
    lines += [f"- {md_text(line)}" for line in _setup_lines(config, facts)]
    header, rows = _results_table(table, cols, primary)
    lines += ["", f"## Results (mean ± std over seeds, best first by {report_text.metric_name(primary)})", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_text(text) for text, _ in row) + " |" for row in rows]
    lines += ["", versus_note(primary, table), ""]
    for section in sections:
        lines += section.markdown(out)
    lines += ["## Figures", ""]
    for title, caption, path in figures:
        lines += [f"### {title}", "", caption, "", f"![{title}]({path.relative_to(out).as_posix()})", ""]
    return "\n".join(lines) + "\n"


def _html(config: dict, table: pd.DataFrame, figures: list[Figure], cols: list[tuple[str, str, int]],
          sections: list[Section] = (), facts: dict | None = None) -> str:
    primary = comparison_tests.primary_metric(config)
    header, rows = _results_table(table, cols, primary)
    head = "".join(f"<th onclick='sortTable({i})'>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = ["<tr>" + "".join(f"<td>{html.escape(text)}</td>" if key is None else
                             f"<td data-v='{'' if math.isnan(key) else report_text.sig(key, 4)}'>{html.escape(text)}</td>"
                             for text, key in row) + "</tr>" for row in rows]
    imgs = "".join(html_figure(*figure) for figure in figures)
    setup = "".join(f"<li>{report_text.inline_html(line)}</li>" for line in _setup_lines(config, facts))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlcompare report: {html.escape(config['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222;
        overflow-wrap: anywhere; }}
.wide {{ overflow-x: auto; max-width: 100%; margin: 0.5em 0; }}
table {{ border-collapse: separate; border-spacing: 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; overflow-wrap: normal; white-space: nowrap; }}
#results td:last-child {{ white-space: normal; min-width: 14em; }}  /* a failure's message wraps */
th {{ background: #f0f0f0; cursor: pointer; }}
th:nth-child(-n+2), td:nth-child(-n+2), td:nth-last-child(-n+2) {{ text-align: left; }}
th:first-child, td:first-child {{ position: sticky; left: 0; background: #fff; z-index: 1; }}
th:first-child {{ background: #f0f0f0; }}
code {{ background: #f4f4f4; padding: 0 0.2em; }}
img {{ max-width: 100%; }} .summary {{ font-size: 1.1em; font-weight: bold; }}
</style></head><body>
<h1>mlcompare report: {html.escape(config['name'])}</h1>
<p>{report_text.inline_html(config['description'])}</p>
{f"<p><em>Question: {report_text.inline_html(config['question'])}</em></p>" if config.get("question") else ""}
<p class="summary">{html.escape(summary_sentence(table, primary, _replicate(config)))}</p>
<h2>Setup</h2><ul>{setup}</ul>
<h2>Results (mean ± std over seeds, best first by {html.escape(report_text.metric_name(primary))}; click a header to sort)</h2>
<div class="wide"><table id="results"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>
<p>{html.escape(versus_note(primary, table))}</p>
{"".join(section.html() for section in sections)}
<h2>Figures</h2>{imgs}
<script>
function sortTable(col) {{
  const tbody = document.querySelector('#results tbody');
  const rows = Array.from(tbody.rows);
  const dir = tbody.dataset.col == col && tbody.dataset.dir == 'desc' ? 'asc' : 'desc';
  const key = r => {{ const c = r.cells[col]; return c.dataset.v !== undefined ? (c.dataset.v === '' ? -Infinity : parseFloat(c.dataset.v)) : c.textContent; }};
  rows.sort((a, b) => {{ const x = key(a), y = key(b); const o = x < y ? -1 : x > y ? 1 : 0; return dir == 'asc' ? o : -o; }});
  rows.forEach(r => tbody.appendChild(r));
  tbody.dataset.col = col; tbody.dataset.dir = dir;
}}
</script></body></html>
"""
