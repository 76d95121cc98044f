"""The sweep's tests: at each swept value, each method group against the best group at that value,
paired over seeds and Holm-corrected within the value, checked against scipy on constructed results."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mlcompare.run import comparison_tests

# accuracy per (value, group) over seeds 0, 1, 2: "a" best at 100, "c" best at 300 (the crossover)
SCORES = {(100, "a"): [0.70, 0.72, 0.71], (100, "b"): [0.66, 0.69, 0.67], (100, "c"): [0.60, 0.64, 0.61],
          (300, "a"): [0.75, 0.74, 0.78], (300, "b"): [0.76, 0.80, 0.77], (300, "c"): [0.81, 0.83, 0.82]}


def results() -> pd.DataFrame:
    rows = [{"method": f"{g}-n{v}", "group": g, "seed": s, "family": "classification", "status": "ok",
             "train_identities": float(v), "accuracy": acc}
            for (v, g), accs in SCORES.items() for s, acc in enumerate(accs)]
    rows.append({"method": "raw pixels", "group": "raw pixels", "seed": 0, "family": "baseline", "status": "ok",
                 "train_identities": np.nan, "accuracy": 0.9})  # better than all, but not a trained method
    return pd.DataFrame(rows)


def test_each_value_has_its_own_best_and_holm_within_the_value():
    got = comparison_tests.within_sweep(results(), "train_identities", "accuracy")
    assert list(got) == ["100", "300"]
    assert got["100"]["best"] == "a" and got["300"]["best"] == "c"
    for value, best in ((100, "a"), (300, "c")):
        others = [g for g in "abc" if g != best]
        raw = {}
        for g in others:
            a, b = np.array(SCORES[(value, g)]), np.array(SCORES[(value, best)])
            d = got[str(value)]["versus_best"][g]
            assert d.mean == pytest.approx((a - b).mean())
            low, high = sps.t.interval(0.95, 2, loc=(a - b).mean(), scale=sps.sem(a - b))
            assert (d.low, d.high) == pytest.approx((low, high))
            raw[g] = sps.ttest_rel(a, b).pvalue
            assert d.p == pytest.approx(raw[g])
        # Holm over the two comparisons at this value (not over all four of the sweep)
        small, large = sorted(others, key=raw.get)
        assert got[str(value)]["versus_best"][small].p_holm == pytest.approx(min(1, 2 * raw[small]))
        assert got[str(value)]["versus_best"][large].p_holm == pytest.approx(max(min(1, 2 * raw[small]), raw[large]))
