"""identification rank-k / CMC against a brute-force loop; DIR at FPIR on hand-built cases."""

import math

import numpy as np
import pytest

from evaluations import UndefinedMetricWarning, identification


def brute_force_ranks(gallery, gallery_labels, probes, probe_labels, metric):
    ids = sorted(set(gallery_labels.tolist()))
    ranks = []
    for p, pl in zip(probes, probe_labels):
        if pl not in ids:
            continue
        best = {}
        for g, gl in zip(gallery, gallery_labels):
            if metric == "cosine":
                s = p @ g / np.linalg.norm(p) / np.linalg.norm(g)
            else:
                s = -np.sum((p - g) ** 2)
            best[gl] = max(best.get(gl, -np.inf), s)
        ranks.append(sum(v >= best[pl] for v in best.values()))
    return np.array(ranks)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_rank_k_and_cmc_match_brute_force(metric):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(15, 8))
    gallery_labels = rng.integers(0, 12, size=45)  # identities 12-14 never in the gallery
    gallery = centres[gallery_labels] + 0.9 * rng.normal(size=(45, 8))
    probe_labels = rng.integers(0, 15, size=60)
    probes = centres[probe_labels] + 0.9 * rng.normal(size=(60, 8))
    r = identification(gallery, gallery_labels, probes, probe_labels, ranks=(1, 2, 5), metric=metric)
    ref = brute_force_ranks(gallery, gallery_labels, probes, probe_labels, metric)
    n_ids = len(set(gallery_labels.tolist()))
    assert r["n_mated"] == len(ref) and r["n_nonmated"] == 60 - len(ref)
    for k in (1, 2, 5):
        assert r[f"rank_{k}"] == pytest.approx(np.mean(ref <= k))
    assert r["cmc"].shape == (n_ids,)
    np.testing.assert_allclose(r["cmc"], [np.mean(ref <= i + 1) for i in range(n_ids)])
    assert r["cmc"][-1] == 1.0
    assert set(r["dir_at_fpir"]) == {0.1, 0.01}


def test_string_labels_and_several_images_per_identity():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    gallery_labels = np.array(["ann", "bob", "bob", "cy"])
    probes = np.array([[0.8, 0.6], [0.0, -1.0]])
    r = identification(gallery, gallery_labels, probes, np.array(["ann", "bob"]), ranks=(1, 2, 3))
    # probe 0: ann 0.8, bob max(0.6, 0.99), cy -0.8 -> ann at rank 2;
    # probe 1: ann 0, bob max(-1, -0.707), cy 0 -> bob at rank 3.
    assert (r["rank_1"], r["rank_2"], r["rank_3"]) == (0.0, 0.5, 1.0)
    assert r["dir_at_fpir"] == {}


def test_dir_at_fpir_follows_the_documented_split():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(30, 16))
    gallery = centres[:20]
    gallery_labels = np.arange(20)
    probe_labels = np.r_[np.arange(20), np.arange(20), np.arange(20, 30), np.arange(20, 30)]
    probes = centres[probe_labels] + 0.8 * rng.normal(size=(60, 16))
    fpirs = (0.5, 0.1, 0.01)
    r = identification(gallery, gallery_labels, probes, probe_labels, fpir=fpirs, seed=3)
    ref = brute_force_ranks(gallery, gallery_labels, probes, probe_labels, "cosine")
    # Recompute with the split the docstring specifies.
    pn = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    s = pn @ gn.T
    top1 = s.max(1)
    mated = probe_labels < 20
    split_rng = np.random.default_rng(3)
    mated_idx, non_idx = np.flatnonzero(mated), np.flatnonzero(~mated)
    m_perm = split_rng.permutation(len(mated_idx))
    test = mated_idx[m_perm[math.ceil(0.5 * len(mated_idx)):]]
    n_perm = split_rng.permutation(len(non_idx))
    val = np.sort(top1[non_idx[n_perm[: math.ceil(0.5 * len(non_idx))]]])[::-1]
    assert len(val) == 10
    rank_of = dict(zip(mated_idx, ref))
    for f in (0.5, 0.1):
        tau = val[int(math.floor(f * 10))]
        expected = np.mean([rank_of[i] == 1 and s[i, probe_labels[i]] > tau for i in test])
        assert r["dir_at_fpir"][f] == pytest.approx(expected, abs=1e-6)
    assert r["dir_at_fpir"][0.01] is None  # 0.01 < 1/10 validation non-mated probes
    assert r["dir_at_fpir"][0.5] >= r["dir_at_fpir"][0.1]


def test_all_probes_non_mated_warns():
    with pytest.warns(UndefinedMetricWarning, match="no probe identity"), pytest.warns(UndefinedMetricWarning, match="no mated probe"):
        r = identification(np.eye(3), [0, 1, 2], np.eye(3), [5, 6, 7], fpir=(0.5,))
    assert np.isnan(r["rank_1"]) and r["n_mated"] == 0
