"""The report's quality section: does a method's feature norm measure image quality?

The statistics below are computed when the run finishes and saved in RUN/stats/quality.json
(:mod:`mlcompare.run.quality_stats`); this module reads and draws them. A run directory written before
that file existed has them computed here, at render time, as before (minutes on all pairs). Drawn only for runs whose curves files hold ``test_degradation`` (the runner saves it, with the
test embeddings and labels, where the test data knows each image's true quality: synthfaces);
older runs and other data give no section and an unchanged report. Per method x seed, on all
pairs of test images (:func:`evaluations.all_pairs`):

- Spearman's rho between feature norm and ground-truth degradation (MagFace's claim: negative);
- error-versus-reject curves at FMR 1e-2 and 1e-3 (threshold fixed at the full set's operating
  point), rejecting by feature norm, at random, and by the true degradation (the oracle);
- AUC-ERC mean +- std over seeds, with paired t-tests across seeds between methods;
- threshold drift: calibrated at FMR 1e-3 on the pairs within one half of the test identities
  (seeded), FMR and FNMR measured on the pairs within the other half;
- QMagFace's quality-aware score (quality = feature norm) fitted on the first half's pairs, FNMR at
  FMR 1e-3 on the other half's, plain against corrected.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mlcompare.report.section import Figure, Section  # noqa: E402
from mlcompare.run import quality_stats  # noqa: E402
from mlcompare.run import saved
from mlcompare.run.quality_stats import DRIFT_FMR, FMRS, RANDOM_REPEATS  # noqa: E402

# The statistics are computed when the run finishes (mlcompare.run.quality_stats); BOOTSTRAP here is what an
# older run directory, written without them, is computed with at render time.
BOOTSTRAP = quality_stats.BOOTSTRAP
_per_seed = quality_stats.per_seed


def _ms(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def sections(inputs: saved.RunInputs, figures_dir: Path, tests: dict) -> list[Section]:
    """The quality sections (curves and correlation, paired tests, threshold drift); none where no
    curves file holds ground truth. ``tests``: the run's tests (:mod:`mlcompare.run.comparison_tests`)."""
    found = quality_stats.by_replicate(inputs)
    if found is None:
        return []
    per, methods, seeds = found
    first = per[(methods[0], seeds[methods[0]][0])]
    intro = (f"Ground truth: each test image's degradation (synthfaces: the mean of its nine realised nuisance "
             f"strengths, 0 = pristine). Pairs: all pairs of test images ({first['n_genuine']:,} genuine, "
             f"{first['n_impostor']:,} impostor). ERC: the lowest-quality pairs (a pair's quality is the lower of "
             f"its two images') rejected in steps of 5 % up to 50 %, FNMR at the threshold fixed at the full set's "
             f"FMR; AUC-ERC is the area under it (lower is better). Rejection by feature norm (high norm = good), "
             f"at random ({RANDOM_REPEATS} orders averaged) and by the true degradation (oracle). rho: Spearman "
             f"correlation of feature norm with degradation (negative: the norm falls as the image degrades). "
             f"Mean ± std over seeds.")
    header = ["method", "rho(norm, degradation)"] + [f"{kind} @{f:g}" for f in FMRS
                                                      for kind in ("AUC-ERC norm", "random", "oracle")]
    rows = []
    for m in methods:
        cells = [m, _ms([per[(m, s)]["spearman"] for s in seeds[m]])]
        for f in FMRS:
            cells += [_ms([per[(m, s)][(kind, f)]["auc"] for s in seeds[m]], 4) for kind in ("norm", "random", "oracle")]
        rows.append(cells)
    figures = [_erc_figure(per, methods, seeds, f, figures_dir) for f in FMRS]
    main = Section("Quality: does the feature norm measure image quality?", [intro, _finding(per, methods, seeds)],
                   header, rows, figures)

    tested = tests["quality"]
    rows_tested = [[t["a"], t["b"], f"{t['difference'].mean:+.4f}",
                    "n/a (1 seed)" if np.isnan(t["difference"].p) else f"{t['difference'].p:.3f}"] for t in tested["pairs"]]
    paired = Section("Quality: paired tests of AUC-ERC between methods",
                     [f"Paired t-tests across seeds of AUC-ERC by feature norm at FMR {FMRS[-1]:g} (two-sided p; the "
                      f"same seed means the same initial backbone and batches)."],
                     ["method A", "method B", "mean A − B", "p"], rows_tested)

    drift_rows = []
    for m in methods:
        own = [per[(m, s)]["drift_own"] for s in seeds[m]]
        other = [per[(m, s)]["drift_other"] for s in seeds[m]]
        drift_rows.append([m, _ms([o["fmr"] for o in own], 5), _ms([o["fmr"] for o in other], 5),
                           _ms([o["fnmr"] for o in own]), _ms([o["fnmr"] for o in other])])
    drift = Section("Quality: calibrated-threshold drift",
                    [f"The threshold for FMR {DRIFT_FMR:g}, chosen on the pairs within one half of the test identities "
                     f"(seeded), applied to the pairs within the other half: how far a deployed threshold's FMR "
                     f"drifts from its target on new people."],
                    ["method", "FMR, calibration half", "FMR, other half", "FNMR, calibration half",
                     "FNMR, other half"], drift_rows)
    q_rows = []
    for m in methods:
        q = [per[(m, s)]["qmagface"] for s in seeds[m]]
        plain, corrected = np.array([x["plain"] for x in q]), np.array([x["corrected"] for x in q])
        change = tested["qmagface"][m]
        q_rows.append([m, _ms([x["alpha"] for x in q], 4), _ms([x["beta"] for x in q], 4), _ms(plain), _ms(corrected),
                       f"{change.mean:+.4f}", "n/a (1 seed)" if np.isnan(change.p) else f"{change.p:.3f}"])
    qmag = Section("Quality: QMagFace's quality-aware score",
                   [f"QMagFace (Terhörst et al. 2023): score s + min(0, beta s - alpha) min(|x_a|, |x_b|), alpha and "
                    f"beta fitted on the pairs within the calibration half of the test identities (as above), FNMR at "
                    f"FMR {DRIFT_FMR:g} (threshold calibrated on each score) on the pairs within the other half. "
                    f"p: paired t-test over seeds of corrected against plain."],
                   ["method", "alpha", "beta", "FNMR plain", "FNMR QMagFace", "change", "p"], q_rows)
    return [main, paired, drift, qmag]


def _finding(per: dict, methods: list[str], seeds: dict) -> str:
    """One clause per method: AUC-ERC by norm against random and oracle, and in how many seeds it beats random."""
    f = FMRS[-1]
    parts = []
    for m in methods:
        norm, rand, oracle = (np.array([per[(m, s)][(kind, f)]["auc"] for s in seeds[m]]) for kind in ("norm", "random", "oracle"))
        parts.append(f"{m} {norm.mean():.4f} (random {rand.mean():.4f}, oracle {oracle.mean():.4f}; "
                     f"below random in {int((norm < rand).sum())} of {len(norm)} seeds)")
    return f"AUC-ERC at FMR {f:g} by feature norm: " + "; ".join(parts) + "."


def _erc_figure(per: dict, methods: list[str], seeds: dict, fmr: float, out: Path) -> Figure:
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.2), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], methods):
        r = per[(m, seeds[m][0])]
        norm, rand, oracle = r[("norm", fmr)], r[("random", fmr)], r[("oracle", fmr)]
        x = norm["reject"]
        ax.plot(x, norm["fnmr"], "-", label="feature norm")
        if "fnmr_low" in norm:
            ax.fill_between(x, norm["fnmr_low"], norm["fnmr_high"], alpha=0.25)
        ax.plot(x, rand["fnmr"], ":", color="grey", label="random")
        ax.plot(x, oracle["fnmr"], "--", color="black", label="oracle (degradation)")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("fraction of pairs rejected")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"FNMR at FMR {fmr:g} (fixed threshold)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / f"erc_{fmr:g}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return (f"ERC at FMR {fmr:g}", f"Error-versus-reject at FMR {fmr:g}, first seed of each method: rejecting "
            f"the pairs of lowest feature norm (band: {BOOTSTRAP}-resample bootstrap over pairs, 95 %), at random, "
            f"and by the true degradation.", path)
