"""The report's sweep section: at each value of the swept setting (training identities, embedding size,
label noise, P or K), which method is best there and how far each other method is from it.

"vs best" in the results table compares every row with the single best row of the whole sweep, which
says which size wins overall, not the question a sweep asks: does the method that wins change with
the setting, and where? The tests are :func:`mlcompare.run.comparison_tests.within_sweep`'s, read
from the run's tests.
"""
from __future__ import annotations

import pandas as pd

from mlcompare.report.section import Section
from mlcompare.report.text import metric_name, plural, versus_best
from mlcompare.run import comparison_tests, stats

# what the section calls a swept field (mlcompare.config.comparison.SWEEPABLE); others: the field's name
LABELS = {"p": "P (identities per batch)", "k": "K (images per identity in a batch)",
          "embedding_dim": "embedding size", "train_identities": "training identities", "label_noise": "label noise"}


def section(config: dict, results: pd.DataFrame, tests: dict) -> Section | None:
    """None for a run without a tested sweep. ``tests``: the run's tests (:mod:`mlcompare.run.comparison_tests`)."""
    by_value = tests.get("sweep")
    if not by_value:
        return None
    sweep, primary = config["sweep"], tests["primary"]
    label = LABELS.get(sweep, sweep.replace("_", " "))
    trained = results[(results.status == "ok") & (results.family != "baseline") & results[sweep].notna()]
    groups = list(dict.fromkeys(trained.group))
    means = trained.groupby([trained[sweep].map(comparison_tests.value_text), "group"])[primary].mean()
    rows, winners = [], []
    for value, tested in by_value.items():
        cells = []
        for group in groups:
            if (value, group) not in means:
                cells.append("-")
                continue
            verdict = "best" if group == tested["best"] else versus_best(tested["versus_best"].get(group))
            cells.append(f"{means[(value, group)]:.3f} ({verdict})")
        rows.append([value, *cells])
        winners.append(f"{tested['best']} at {value}")
    counts = {len(t["versus_best"]) for t in by_value.values()}  # one count unless a method lacks a value
    comparisons = plural(counts.pop(), "comparison") if len(counts) == 1 else "comparisons"
    text = [f"At each value of {label}, each method's mean {metric_name(primary)} over seeds and its difference to "
            f"the best method at that value (method − best, uncorrected 95% CI over seeds, paired t-test's p "
            f"Holm-corrected over the {comparisons} at that value; \"tie\": not significant "
            f"at {stats.ALPHA:g} after the correction). Whether the winner changes with the setting is read down the "
            f"columns: best by {metric_name(primary)}: {'; '.join(winners)}."]
    return Section(f"By {label}", text, [label, *groups], rows)
