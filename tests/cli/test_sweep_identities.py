"""A sweep over train_identities: results.csv records how many identities each method trained on,
and the report plots the scores against it (also for runs written before the column existed)."""
import json

import pandas as pd

from mlcompare.cli import main
from mlcompare.run import comparison_tests
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
    text = (out / "report.md").read_text()
    assert "### Sweep" in text
    # value by value: which method is best at each number of identities, tested within that value
    saved = json.loads((out / comparison_tests.PATH).read_text())
    assert saved["version"] == comparison_tests.VERSION and list(saved["sweep"]) == ["4", "6"]
    section = text.split("## By training identities", 1)[1].split("\n## ", 1)[0]
    for value in ("4", "6"):
        best = saved["sweep"][value]["best"]
        assert f"{best} at {value}" in section
        row = next(line for line in section.splitlines() if line.startswith(f"| {value} |"))
        cells = row.strip("| ").split(" | ")[1:]
        assert len(cells) == 2 and sum(cell.endswith("(best)") for cell in cells) == 1
    # tests saved by code that saved no sweep tests (version 1) are computed again, not shown without the section
    old = dict(saved, version=1)
    del old["sweep"]
    (out / comparison_tests.PATH).write_text(json.dumps(old))
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == text
    # a run written before results.csv had the column: the report takes it from config.json's methods
    results.drop(columns="train_identities").to_csv(out / "results.csv", index=False)
    assert main(["report", str(out)]) == 0
    assert (out / "figures" / "sweep.png").read_bytes() == figure
