"""A report folder rebuilds: `mlcompare report RUN --out DIR` keeps what the report reads, and
`mlcompare report DIR` renders the same report again, for a fresh run and every committed report.

How figures are compared: the Markdown must be equal byte for byte (every number, table and
sentence, and the list of figures it names). The figures of a committed report were drawn on another
machine, where another matplotlib or FreeType may place a glyph a pixel apart, so for those only the
set of figure files is compared; a report rebuilt on this machine must give the same pixels (PNG
metadata, such as matplotlib's version, is not compared).
"""
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from mlcompare.cli import main

REPORTS = Path(__file__).resolve().parents[2] / "reports"
REBUILDABLE = sorted(p.parent for p in REPORTS.glob("*/config.json"))


def figure_names(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "figures").glob("*.png"))


@pytest.mark.parametrize("committed", REBUILDABLE, ids=[p.name for p in REBUILDABLE])
def test_every_committed_report_rerenders_to_its_markdown(committed, tmp_path):
    out = tmp_path / committed.name
    assert main(["report", str(committed), "--out", str(out)]) == 0
    assert (out / "report.md").read_text() == (committed / "report.md").read_text()
    assert figure_names(out) == figure_names(committed)


def test_a_report_folder_holds_what_renders_it_again(tiny, tmp_path):
    run, first, second = tmp_path / "run", tmp_path / "first", tmp_path / "second"
    assert main(["run", str(tiny), "--out", str(run), "--no-progress", "--steps", "3"]) == 0
    assert main(["report", str(run), "--out", str(first)]) == 0
    kept = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file() and p.parent.name != "figures")
    assert kept == sorted(["config.json", "results.csv", "history.csv", "provenance.json", "test_labels_sample.npy",
                           "report.md", "report.html", "curves/raw-pixels-s0.npz", "curves/softmax-s0.npz",
                           "curves/triplet-bh-s0.npz", "stats/tests.json"])  # no checkpoints
    assert main(["report", str(first), "--out", str(second)]) == 0
    assert main(["report", str(first)]) == 0  # and in place
    for folder in (first, second):
        assert (folder / "report.md").read_text() == (run / "report.md").read_text()
        assert figure_names(folder) == figure_names(run)
        for name in figure_names(run):
            assert np.array_equal(matplotlib.image.imread(folder / "figures" / name),
                                  matplotlib.image.imread(run / "figures" / name)), name
