"""A sweep over train_identities: results.csv records how many identities each method trained on,
and the report plots the scores against it (also for runs written before the column existed)."""
import pandas as pd

from mlcompare.cli import main
from tests.conftest import TINY

SWEEP = """
[sweep]
key = "train_identities"
values = [4, 6]
name = "{method}-n{label}"
"""


def test_results_carry_train_identities_and_the_report_plots_them(tmp_path):
    (tmp_path / "t.toml").write_text(TINY + SWEEP)
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "t.toml"), "--out", str(out), "--no-progress", "--steps", "4"]) == 0
    results = pd.read_csv(out / "results.csv")
    trained = results.set_index("method").train_identities
    assert trained["softmax-n4"] == 4 and trained["triplet-bh-n6"] == 6
    figure = (out / "figures" / "sweep.png").read_bytes()
    assert "### Sweep" in (out / "report.md").read_text()
    # a run written before results.csv had the column: the report takes it from config.json's methods
    results.drop(columns="train_identities").to_csv(out / "results.csv", index=False)
    assert main(["report", str(out)]) == 0
    assert (out / "figures" / "sweep.png").read_bytes() == figure
