"""The report's figures: one function each, composed by `_figures`; what they draw from the run's
saved data (angle bins, the embedded identities) rather than from constants."""
import re
import shutil

import matplotlib.figure
import numpy as np
import pytest

from mlcompare.cli import main
from mlcompare.errors import UserError
from mlcompare.report import render
from mlcompare.run import saved

ORDER = ["Scores", "ROC", "CMC", "Loss curves", "Training statistics", "Angles", "Embeddings", "Cost"]


@pytest.fixture
def run(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def titles(run):
    return re.findall(r"^### (.+)$", (run / "report.md").read_text(), re.M)


def test_each_figure_function_draws_what_the_report_shows(run, tmp_path):
    inputs = saved.load(run)
    table = render.summarise(inputs.results)
    styles = render.styles_of(inputs.results)
    curves = {"raw pixels": ("baseline", inputs.curves[("raw pixels", 0)]),
              "softmax": ("classification", inputs.curves[("softmax", 0)]),
              "triplet-bh": ("pair", inputs.curves[("triplet-bh", 0)])}
    alone = tmp_path / "alone"
    alone.mkdir()
    drawn = [render._scores(table, "accuracy", styles, alone), render._sweep(inputs.results, "", styles, alone),
             render._roc(curves, styles, alone), render._cmc(curves, styles, alone), render._loss_curves(inputs.history, alone),
             render._training_stats(inputs.history, styles, alone), render._angles(curves, alone),
             render._embeddings(curves, inputs.labels, alone), render._cost(inputs.results, inputs.config["device"], styles, alone)]
    assert [f[0] if f else None for f in drawn] == ["Scores", None, *ORDER[1:]]
    assert titles(run) == ORDER
    for _, _, path in filter(None, drawn):
        assert path.read_bytes() == (run / "figures" / path.name).read_bytes(), path.name
    assert sorted(p.name for p in (run / "figures").iterdir()) == sorted(p.name for p in alone.iterdir())


def test_sweep_figure_comes_second(run):
    config = (run / "config.json").read_text()
    (run / "config.json").write_text(config.replace('"sweep": ""', '"sweep": "embedding_dim"'))
    assert main(["report", str(run)]) == 0
    assert titles(run) == ["Scores", "Sweep", *ORDER[1:]]
    inputs = saved.load(run)
    alone = render._sweep(inputs.results, "embedding_dim", render.styles_of(inputs.results), run.parent)
    assert alone is not None and alone[2].read_bytes() == (run / "figures" / "sweep.png").read_bytes()


def test_a_loss_parameter_sweep_is_not_plotted(run):
    config = (run / "config.json").read_text()
    (run / "config.json").write_text(config.replace('"sweep": ""', '"sweep": "params.margin"'))
    assert main(["report", str(run)]) == 0  # no results.csv column to plot it against
    assert titles(run) == ORDER


def rewrite_curves(run, method, **change):
    """Rewrite a curves file with the arrays in ``change``; a None drops that array."""
    path = run / "curves" / f"{method}-s0.npz"
    with np.load(path) as npz:
        curves = dict(npz) | change
    np.savez(path, **{k: v for k, v in curves.items() if v is not None})
    return curves


def test_angles_are_drawn_on_the_bins_the_run_saved(run):
    before = (run / "figures" / "angles.png").read_bytes()
    curves = rewrite_curves(run, "softmax", theta_bins=None)  # as written before runs saved their bins
    assert main(["report", str(run)]) == 0
    assert (run / "figures" / "angles.png").read_bytes() == before  # the fallback is the runner's 2-degree bins
    assert len(curves["theta_target_hist"]) == 90
    rewrite_curves(run, "softmax", theta_bins=np.linspace(0.0, 180.0, 46),  # 4-degree bins
                   **{k: curves[k].reshape(45, 2).sum(axis=1) for k in ("theta_target_hist", "theta_other_hist")})
    assert main(["report", str(run)]) == 0
    assert (run / "figures" / "angles.png").read_bytes() != before


def test_angle_histogram_that_does_not_fit_its_bins_is_refused(run):
    rewrite_curves(run, "softmax", theta_bins=np.linspace(0.0, 180.0, 46))
    with pytest.raises(UserError, match="theta_target_hist has 90 bins but theta_bins 46 edges"):
        render.render(run)


def test_embedding_title_counts_the_sampled_identities(run, monkeypatch):
    shown = []
    original = matplotlib.figure.Figure.suptitle

    def record(self, text, **kwargs):
        shown.append(text)
        return original(self, text, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", record)
    identities = len(np.unique(np.load(run / "test_labels_sample.npy")))
    assert identities == 4  # the tiny run holds out 4 of the 10 digits
    render.render(run)
    assert "Test embeddings of 4 held-out identities\n(PCA of the L2-normalised embeddings)" in shown


def test_p_at_1_is_shown_beside_r_precision_only():
    """The retrieval trio of MLRC shows together for runs that measured R-Precision; older results
    (P@1 and MAP@R only) keep the table they were committed with."""
    import pandas as pd

    new = pd.DataFrame({"precision_at_1": [0.8], "r_precision": [0.6]})
    old = pd.DataFrame({"precision_at_1": [0.8], "r_precision": [float("nan")]})
    assert [c for c, _, _ in render.columns(new) if c in ("precision_at_1", "r_precision")] == ["precision_at_1", "r_precision"]
    assert not {"precision_at_1", "r_precision"} & {c for c, _, _ in render.columns(old)}
    assert not {"precision_at_1", "r_precision"} & {c for c, _, _ in render.columns(old.drop(columns="r_precision"))}
