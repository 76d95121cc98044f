"""A deployment's questions on the user's own pairs: ``mlcompare eval --fmr / --threshold / --erc / --qmagface``.

Which threshold gives FMR 1e-3 here, and what FNMR does it cost (``--fmr``)? What does a threshold
chosen elsewhere give here (``--threshold``)? Does rejecting the images of lowest quality remove
errors (``--erc``: feature norm, the data's ground truth, or the user's CSV)? Does QMagFace's
quality-aware score help, fitted on one half of the pairs and measured on the other (``--qmagface``)?

The pairs: with ``--data``, every pair of images (all genuine pairs and all impostor pairs, or a
seeded sample of :data:`MAX_IMPOSTORS` of them); with ``--bin`` / ``--pairs``, the file's pairs.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import evaluations
from mlcompare.errors import UserError

MAX_IMPOSTORS = 10_000_000  # scores kept in memory: 40 MB as float32
ERC_REJECT = (0.0, 0.05, 0.1, 0.2, 0.3)
SPLIT_SEED = 0


@dataclass
class PairSet:
    """Pairs of embedded images: ``index_a``/``index_b`` index ``embeddings`` (raw, not normalised),
    ``scores`` their cosine similarities (computed once: up to :data:`MAX_IMPOSTORS` of them).

    ``keys`` name each image (its path, or ``#row``) for a quality CSV; ``labels`` (identity per
    image) exist for ``--data`` only; ``degradation`` where the data knows each image's true quality.
    """

    embeddings: np.ndarray
    index_a: np.ndarray
    index_b: np.ndarray
    same: np.ndarray
    scores: np.ndarray
    keys: list[str]
    labels: np.ndarray | None = None
    degradation: np.ndarray | None = None

    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        """Two disjoint halves of the pairs: by identity where labels exist (:func:`identity_halves`);
        else the first and second half of the file's pairs (LFW's folds 1-5 and 6-10)."""
        if self.labels is None:
            first = np.arange(self.same.shape[0]) < self.same.shape[0] // 2
            return first, ~first
        return identity_halves(self.labels, self.index_a, self.index_b)


def identity_halves(labels: np.ndarray, index_a: np.ndarray, index_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs within a seeded half of the identities, and the pairs within the other half (pairs
    across the halves in neither), so that no identity is in both."""
    ids = np.unique(labels)
    in_a = np.isin(labels, np.random.default_rng(SPLIT_SEED).permutation(ids)[: len(ids) // 2])
    return in_a[index_a] & in_a[index_b], ~in_a[index_a] & ~in_a[index_b]


def all_pairs_of(embeddings: np.ndarray, labels: np.ndarray, keys: list[str],
                 degradation: np.ndarray | None = None) -> PairSet:
    """Every pair of a labelled set (impostors sampled down to :data:`MAX_IMPOSTORS`, seeded)."""
    p = evaluations.all_pairs(embeddings, labels, max_impostors=MAX_IMPOSTORS)
    return PairSet(embeddings, p["index_a"], p["index_b"], p["same"], p["scores"], keys, labels, degradation)


def listed_pairs(embeddings: np.ndarray, same: np.ndarray, keys: list[str]) -> PairSet:
    """Images in pair order (a0, b0, a1, b1, ...), as ``--bin`` and ``--pairs`` give them."""
    n = embeddings.shape[0]
    a, b = np.arange(0, n, 2), np.arange(1, n, 2)
    return PairSet(embeddings, a, b, np.asarray(same, dtype=bool), evaluations.pair_scores(embeddings[a], embeddings[b]),
                   keys)


def image_quality(pairs: PairSet, how: str) -> np.ndarray:
    """Per image, higher = better: ``norm`` (feature norm), ``truth`` (minus the ground-truth
    degradation), or a CSV path with columns ``path,quality`` (or ``row,quality``)."""
    if how == "norm":
        return np.linalg.norm(pairs.embeddings, axis=1)
    if how == "truth":
        if pairs.degradation is None:
            raise UserError("--erc truth: this data has no ground-truth quality (only synthfaces does); "
                            "use --erc norm or --erc FILE.csv")
        return -pairs.degradation
    return _quality_csv(Path(how), pairs.keys)


def _quality_csv(path: Path, keys: list[str]) -> np.ndarray:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise UserError(f"--erc {path}: cannot read it ({err.strerror}); give norm, truth or a CSV of path,quality") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"--erc {path}: not a UTF-8 CSV ({err}); give norm, truth or a CSV of path,quality") from err
    column = "path" if rows and "path" in rows[0] else "row" if rows and "row" in rows[0] else None
    if column is None or "quality" not in rows[0]:
        raise UserError(f"--erc {path}: needs a header with columns path,quality (or row,quality)")
    given: dict[str, float] = {}
    for i, row in enumerate(rows):
        if None in row.values():  # csv.DictReader fills a short row's missing fields with None
            raise UserError(f"--erc {path}: line {i + 2} has fewer fields than the header ({column},quality)")
        try:
            given[row[column] if column == "path" else f"#{int(row[column])}"] = float(row["quality"])
        except ValueError as err:
            raise UserError(f"--erc {path}: line {i + 2}: {err}") from err
    wanted = keys if column == "path" else [f"#{i}" for i in range(len(keys))]
    missing = [k for k in wanted if k not in given]
    if missing:
        raise UserError(f"--erc {path}: no quality for {len(missing)} of {len(wanted)} images, e.g. {missing[0]}")
    q = np.array([given[k] for k in wanted], dtype=np.float64)
    if not np.isfinite(q).all():
        raise UserError(f"--erc {path}: qualities must be finite numbers")
    return q


def operating_points(pairs: PairSet, fmrs: list[float]) -> list[dict[str, Any]]:
    """Per target FMR: the threshold calibrated on these pairs and the FMR / FNMR it gives here."""
    s = pairs.scores
    out = []
    for fmr in fmrs:
        t = evaluations.calibrate_threshold(s, pairs.same, fmr)
        out.append({"target_fmr": fmr} | _point(s, pairs.same, t))
    return out


def at_threshold(pairs: PairSet, threshold: float) -> dict[str, Any]:
    """FMR and FNMR of a threshold chosen elsewhere (accept iff cosine > threshold)."""
    return _point(pairs.scores, pairs.same, threshold)


def _point(s: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", evaluations.UndefinedMetricWarning)  # NaN rates are printed as such
        p = evaluations.operating_point(s, same, threshold)
    return {k: p[k] for k in ("threshold", "fmr", "fnmr", "n_genuine", "n_impostor")}


def reject_curves(pairs: PairSet, quality: np.ndarray, fmrs: list[float]) -> list[dict[str, Any]]:
    """Per FMR: FNMR after rejecting the lowest-quality pairs (threshold fixed at the full set's
    operating point), against random rejection; AUC-ERC of each over reject 0-30%."""
    s, a, b = pairs.scores, pairs.index_a, pairs.index_b
    out = []
    for fmr in fmrs:
        curve = evaluations.erc(s, pairs.same, quality[a], quality[b], fmr=fmr, reject=ERC_REJECT)
        random = evaluations.erc_random(s, pairs.same, fmr=fmr, reject=ERC_REJECT)
        out.append({"fmr": fmr, "reject": list(ERC_REJECT), "fnmr": curve["fnmr"].tolist(),
                    "fnmr_random": random["fnmr"].tolist(), "auc": curve["auc"], "auc_random": random["auc"]})
    return out


def qmagface(pairs: PairSet, fmrs: list[float]) -> dict[str, Any]:
    """QMagFace's score (quality = feature norm) fitted on one half of the pairs
    (:meth:`PairSet.halves`), and FNMR at each FMR on the other half, plain against corrected."""
    norms = np.linalg.norm(pairs.embeddings, axis=1)
    try:
        return qmagface_on_halves(pairs.scores, pairs.same, norms[pairs.index_a], norms[pairs.index_b],
                                  *pairs.halves(), fmrs)
    except ValueError as err:
        raise UserError(f"--qmagface: cannot fit on half of these pairs ({err})") from err


def qmagface_on_halves(s: np.ndarray, same: np.ndarray, quality_a: np.ndarray, quality_b: np.ndarray,
                       fit_half: np.ndarray, test_half: np.ndarray, fmrs: list[float]) -> dict[str, Any]:
    """QMagFace fitted on the pairs of ``fit_half`` (bool masks), and per FMR the FNMR on the pairs
    of ``test_half``, each score's threshold calibrated there: ``alpha``, ``beta``, the pair counts,
    and ``rows`` of ``{fmr, fnmr_plain, fnmr_qmagface}``."""
    fit = evaluations.fit_qmagface(s[fit_half], same[fit_half], quality_a[fit_half], quality_b[fit_half])
    corrected = evaluations.qmagface_scores(s, quality_a, quality_b, alpha=fit["alpha"], beta=fit["beta"])
    rows = []
    for fmr in fmrs:
        row: dict[str, Any] = {"fmr": fmr}
        for name, score in (("plain", s), ("qmagface", corrected)):
            t = evaluations.calibrate_threshold(score[test_half], same[test_half], fmr)
            row[f"fnmr_{name}"] = _point(score[test_half], same[test_half], t)["fnmr"]
        rows.append(row)
    return {"alpha": fit["alpha"], "beta": fit["beta"], "fit_pairs": int(fit_half.sum()),
            "test_pairs": int(test_half.sum()), "rows": rows}
