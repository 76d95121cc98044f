"""The report's benchmark section: the table face papers print (one column per benchmark, accuracy
mean ± std over seeds and cross-validation folds, raw pixels as the floor), the best method of each
family per benchmark with their paired difference, and a figure of every replicate's accuracy."""
from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mlcompare.report.section import Section  # noqa: E402
from mlcompare.report.style import Styles  # noqa: E402
from mlcompare.report.text import p_text  # noqa: E402

SIDE_NAMES = {"classification": "margin-softmax classification", "pair": "metric learning"}


def names(config: dict) -> list[str]:
    """The benchmarks a run scored, in the comparison's order."""
    return [b["name"] for b in config.get("benchmarks", [])]


def section(config: dict, results: pd.DataFrame, styles: Styles, figures: Path, tests: dict) -> Section | None:
    """None for a run without benchmarks. ``tests``: the run's tests (:mod:`mlcompare.run.comparison_tests`)."""
    benches = names(config)
    if not benches:
        return None
    ok = results[results.status == "ok"]
    order = list(dict.fromkeys(ok.method))
    cv = config.get("crossval", {}).get("benchmark", "")
    folds = [f["fold"] for f in config.get("folds", [])]
    header = ["Method", "Family"] + [f"{b} accuracy (%)" for b in benches] + [f"{b} AUC" for b in benches]
    rows = []
    for method in order:
        got = ok[ok.method == method]
        cells = [method, got.family.iloc[0]]
        for metric, scale, digits in (("accuracy", 100, 2), ("auc", 1, 4)):
            for b in benches:
                values = got[f"{b}.{metric}"].dropna() * scale
                cells.append("n/a" if values.empty else f"{values.mean():.{digits}f}" +
                             (f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""))
        rows.append(cells)
    described = {b["name"]: b for b in config.get("benchmark_sets", [])}
    # config.json describes the first fold's benchmarks; under cross-validation each fold has its own split
    split_only = re.compile(r", split \d+ only \(threshold chosen within it\)")
    what = "; ".join(f"{b}: {split_only.sub('', described[b]['description'])} "
                     f"({described[b]['pairs']} pairs{', each fold its own split' if folds else ''})"
                     if b in described else b for b in benches)
    paragraphs = [f"Verification on each benchmark's own pairs ({what}). Accuracy is the mean over ten folds of the "
                  "pairs with each fold's threshold chosen on the other nine" + (" (under cross-validation, ten inner "
                  "folds of the fold's own split: below)" if cv else "") + "; ± is the standard deviation over "
                  + (f"seeds and the {len(folds)} cross-validation folds ({', '.join(map(str, folds))})"
                     if folds else "seeds") + "."]
    if cv:
        paragraphs.append(f"Cross-validated on {cv}'s identity-disjoint splits: the models of fold k trained on the people "
                          "outside split k and were tested on split k's pairs only, each threshold chosen by ten inner "
                          "folds of split k's own pairs (people the model never trained on), not on the other splits "
                          "(whose people it trained on).")
    shared = config.get("shared_names", {})
    if shared:
        paragraphs.append("Names shared by a benchmark and the training set (declared acceptable): "
                          + ", ".join(f"{b} {n}" for b, n in shared.items()) + ".")
    paragraphs += [_verdict(tests["benchmarks"].get(b), b) for b in benches]
    fig_path = _figure(ok, order, benches, styles, figures)
    return Section("Benchmarks", [p for p in paragraphs if p], header, rows,
                   [("Benchmark accuracy per replicate", "Each dot is one seed x fold; bars: the mean.", fig_path)])


def _verdict(test: dict | None, bench: str) -> str:
    """Which family's best method (by mean accuracy) wins on ``bench``, by how much, and whether the
    difference is within the noise of the replicates (a paired t-test and its 95% interval); ``test``:
    :func:`mlcompare.run.comparison_tests.benchmark`'s, None where one side did not run."""
    if test is None:
        return ""
    d = test["difference"]
    winner, loser = test["winner"], test["loser"]
    if d.n < 2 or math.isnan(d.p):
        noise = "with one replicate there is no measure of the noise"
    elif d.p < 0.05:
        noise = f"outside the noise (paired t-test over {d.n} replicates, {p_text(d.p)})"
    else:
        noise = f"within the noise (a tie: paired t-test over {d.n} replicates, {p_text(d.p)})"
    half = (d.high - d.low) / 2
    interval = f" (95% CI ± {100 * half:.2f})" if not math.isnan(half) else ""
    return (f"{bench}: the best {SIDE_NAMES[test['winner_side']]} method ({winner}, {100 * test['winner_mean']:.2f}%) is "
            f"ahead of the best {SIDE_NAMES[test['loser_side']]} method ({loser}, {100 * test['loser_mean']:.2f}%) by "
            f"{100 * d.mean:.2f} points{interval}, {noise}.")


def _figure(ok: pd.DataFrame, order: list[str], benches: list[str], styles: Styles, figures: Path) -> Path:
    fig, axes = plt.subplots(1, len(benches), figsize=(4.5 * len(benches), 0.45 * len(order) + 1.5), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        for y, method in enumerate(order):
            got = ok[ok.method == method]
            values = 100 * got[f"{bench}.accuracy"].dropna().to_numpy()
            colour, marker = styles[method]  # the method's colour and marker in every figure of the report
            if len(values):
                ax.barh(y, values.mean(), color=colour, alpha=0.35)
                ax.plot(values, np.full(len(values), y), marker, color=colour, markersize=4, linestyle="none")
        values = 100 * ok[[f"{bench}.accuracy"]].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size:
            ax.set_xlim(max(0.0, finite.min() - 3), min(100.0, finite.max() + 2))
        ax.set_yticks(range(len(order)), order if ax is axes[0][0] else [""] * len(order))
        ax.invert_yaxis()
        ax.set_xlabel(f"{bench} accuracy (%)")
        ax.grid(axis="x", alpha=0.3)
    path = figures / "benchmarks.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
