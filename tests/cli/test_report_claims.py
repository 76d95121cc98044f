"""What the report claims and how it writes numbers: the primary metric names the best, "tie" where
the Holm-corrected test is not significant, 3-4 significant figures, plurals, code in HTML."""
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from mlcompare.cli import main
from mlcompare.report import render
from mlcompare.report import text as report_text
from mlcompare.run.stats import holm


@pytest.mark.parametrize("value, text", [(12.999655558336613, "13"), (0.18116398756644217, "0.181"), (0.00533, "0.00533"),
                                         (1e-05, "1e-5"), (3e-4, "0.0003"), (1234.5, "1234"), (-0.0123456, "-0.0123"),
                                         (0.1, "0.1"), (0.0, "0"), (float("nan"), "n/a")])
def test_sig(value, text):
    assert report_text.sig(value) == text


def test_round_numbers_plural_and_code():
    assert (report_text.round_numbers("s=12.999655558336613 m=0.18116398756644217 lr=0.00533 p=16 miner=batch_hard(margin=0.2)")
            == "s=13 m=0.181 lr=0.00533 p=16 miner=batch_hard(margin=0.2)")
    assert report_text.round_numbers("eps=1e-07 v2.13.0") == "eps=1e-7 v2.13.0"
    assert [report_text.plural(n, "seed") for n in (0, 1, 3)] == ["0 seeds", "1 seed", "3 seeds"]
    assert report_text.plural(1, "identity", "identities") == "1 identity"
    assert report_text.plural(2, "identity", "identities") == "2 identities"
    assert report_text.inline_html("Data: `a<b`, x") == "Data: <code>a&lt;b</code>, x"


def results(rows: list[tuple[str, str, int, float, float]]) -> pd.DataFrame:
    """A results.csv as the runner writes it, from (method, family, seed, accuracy, map_at_r)."""
    out = pd.DataFrame(rows, columns=["method", "family", "seed", "accuracy", "map_at_r"])
    return out.assign(status="ok", loss=out.method, message="", params="", rank_1=0.5)


# Accuracy and MAP@R disagree: by accuracy triplet-a and arcface lead, by MAP@R triplet-b and softmax.
DISAGREE = results([(m, fam, s, acc + d, mapr + d) for s, d in enumerate((0.0, 0.004, -0.003))
                    for m, fam, acc, mapr in (("softmax", "classification", 0.90, 0.52), ("arcface", "classification", 0.93, 0.50),
                                              ("triplet-a", "pair", 0.95, 0.55), ("triplet-b", "pair", 0.94, 0.60))])


def test_the_primary_metric_names_the_best():
    by_accuracy = render.summary_sentence(render.summarise(DISAGREE, "accuracy"), "accuracy")
    by_map = render.summary_sentence(render.summarise(DISAGREE, "map_at_r"), "map_at_r")
    assert by_accuracy.startswith("By verification accuracy (this comparison's primary metric), on held-out identities "
                                  "the best metric learning method (triplet-a) reaches 0.950 (rank-1 0.500), against "
                                  "0.930 (0.500) for the best margin-softmax classification method (arcface)")
    assert by_map.startswith("By MAP@R (this comparison's primary metric), on held-out identities the best metric "
                             "learning method (triplet-b) reaches 0.600 (verification accuracy 0.940, rank-1 0.500), "
                             "against 0.520 (0.900, 0.500) for the best margin-softmax classification method (softmax)")
    table = render.summarise(DISAGREE, "map_at_r")
    assert table.method.tolist() == ["triplet-b", "triplet-a", "softmax", "arcface"]  # sorted by the primary metric
    assert table.vs_best.iloc[0] == "best"


def noisy(gap: float, noise: tuple[float, ...]) -> pd.DataFrame:
    """softmax ahead of triplet by ``gap`` in accuracy, plus per-seed ``noise`` on triplet."""
    return results([row for s, e in enumerate(noise) for row in
                    (("softmax", "classification", s, 0.95, 0.5), ("triplet", "pair", s, 0.95 - gap + e, 0.5))])


def test_tie_where_the_corrected_test_is_not_significant():
    tie = render.summarise(noisy(0.01, (0.02, -0.025, 0.015)), "accuracy")
    d = tie.set_index("method").versus["triplet"]
    ref = scipy_stats.ttest_rel([0.95 - 0.01 + e for e in (0.02, -0.025, 0.015)], [0.95] * 3)
    ci = ref.confidence_interval(0.95)
    assert (d.mean, d.low, d.high, d.p_holm) == pytest.approx((-0.01 + 0.01 / 3, ci.low, ci.high, ref.pvalue))
    sentence = render.summary_sentence(tie, "accuracy")
    assert (f"softmax ties with triplet: the difference of +0.007 verification accuracy is not significant (uncorrected "
            f"95% CI over 3 seeds [{-ci.high:+.3f}, {-ci.low:+.3f}], Holm-corrected p={ref.pvalue:.3f})") in sentence
    assert "beats" not in sentence
    assert tie.set_index("method").vs_best["triplet"] == f"-0.007 [{ci.low:+.3f}, {ci.high:+.3f}] tie (p={ref.pvalue:.3f})"

    clear = render.summarise(noisy(0.05, (0.001, -0.002, 0.0015)), "accuracy")
    sentence = render.summary_sentence(clear, "accuracy")
    assert "softmax beats triplet by +0.050 verification accuracy (uncorrected 95% CI over 3 seeds [" in sentence
    assert "ties with" not in sentence and "tie" not in clear.vs_best.iloc[1]
    # under cross-validation a replicate is a seed x fold, and the sentence says so
    assert "(uncorrected 95% CI over 3 seed x folds [" in render.summary_sentence(clear, "accuracy", "seed x fold")

    one_seed = render.summarise(noisy(0.05, (0.0,)), "accuracy")
    assert "softmax leads triplet by +0.050 verification accuracy on one seed, too few for a test between methods" \
        in render.summary_sentence(one_seed, "accuracy")
    assert one_seed.vs_best.iloc[1] == "-0.050 (1 seed: no test)"


def test_holm_counts_every_comparison_with_the_best():
    three = results([row for s, e in enumerate((0.004, -0.003, 0.002, -0.001)) for row in
                     (("softmax", "classification", s, 0.95, 0.5), ("arcface", "classification", s, 0.945 + e, 0.5),
                      ("triplet", "pair", s, 0.94 - e, 0.5))])
    table = render.summarise(three, "accuracy").set_index("method")
    raw = [scipy_stats.ttest_rel(three[three.method == m].accuracy, three[three.method == "softmax"].accuracy).pvalue
           for m in ("arcface", "triplet")]
    assert [table.versus[m].p_holm for m in ("arcface", "triplet")] == pytest.approx(list(holm(raw)))
    smaller = ("arcface", "triplet")[int(np.argmin(raw))]
    assert table.versus[smaller].p_holm == pytest.approx(2 * min(raw))  # corrected for two comparisons, not the raw p


FLOAT = re.compile(r"(?<![\w.])\d*\.\d+(?:[eE][-+]?\d+)?")


def significant_figures(number: str) -> int:
    mantissa = re.split(r"[eE]", number)[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_a_rendered_report_writes_no_float_beyond_4_significant_figures(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    table = pd.read_csv(run / "results.csv")
    table["params"] = table["params"].astype(object)
    table.loc[table.method == "softmax", "params"] = "s=12.999655558336613 m=0.18116398756644217"
    table.to_csv(run / "results.csv", index=False)
    config = json.loads((run / "config.json").read_text())
    config["train"]["lr"] = 0.0012345678
    (run / "config.json").write_text(json.dumps(config))
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", (run / "report.html").read_text())
    for text in (md, page):
        long = [n for n in FLOAT.findall(text) if significant_figures(n) > 4]
        assert not long, long[:5]
        assert "softmax s=13 m=0.181" in text and "lr 0.00123" in text and "1 seed," in text
        assert "(s)" not in text
    assert "<code>digits</code>" in page and "`" not in page.split("<script>")[0]
