"""CFP's official protocol and data, read from ../shared/data/cfp (skipped with the reason where absent)."""
import numpy as np
import pytest
import torch

import evaluations
from mlcompare.config import comparison as config
from mlcompare.data import leakage, load
from mlcompare.run import benchmarks


@pytest.mark.parametrize("protocol, second", [("FF", "frontal"), ("FP", "profile")])
def test_ten_identity_disjoint_splits_of_350_same_and_350_different_pairs(cfp, protocol, second):
    a, b, same, split = evaluations.read_cfp(cfp, protocol)
    assert len(a) == len(b) == len(same) == len(split) == 7000
    assert split.tolist() == [k for k in range(1, 11) for _ in range(700)]
    for k in range(1, 11):
        block = same[split == k]
        assert block[:350].all() and not block[350:].any()  # each split: its same pairs, then its diff pairs
    for path in a + b:
        assert path.startswith(str(cfp)) and "/Data/Images/" in path
    assert all("/frontal/" in p for p in a) and all(f"/{second}/" in p for p in b)
    import os
    assert all(os.path.isfile(p) for p in set(a) | set(b))
    person = lambda path: path.split("/Data/Images/")[1].split("/")[0]  # noqa: E731
    people = [{person(p) for p, s in zip(a + b, np.concatenate([split, split])) if s == k} for k in range(1, 11)]
    for i in range(10):
        for j in range(i + 1, 10):
            assert not people[i] & people[j], (i + 1, j + 1)
    # the README: split k covers people 50(k-1)+1 .. 50k
    assert people[2] == {f"{n:03d}" for n in range(101, 151)}
    # genuine pairs show one person, impostor pairs two
    assert all((person(p) == person(q)) == s for p, q, s in zip(a, b, same))


def test_fold_accuracy_is_the_verification_protocol_with_the_splits_as_folds(cfp):
    bench = benchmarks.load(config.BenchmarkConfig(kind="cfp", path=str(cfp), protocol="FF", name="ff"), size=16)
    # hand-made scores: genuine pairs score 1 + noise, impostors noise; embeddings that give them exactly are
    # not needed: score() is pair_scores + verification over the ten splits, which we rebuild here
    emb = torch.randn(len(bench.images), 8, generator=torch.Generator().manual_seed(0))
    got = bench.score(emb)
    scores = evaluations.pair_scores(emb[bench.a], emb[bench.b])
    ref = evaluations.verification(scores, bench.same, folds=10, far=(1e-2, 1e-3))
    assert got["ff.accuracy"] == pytest.approx(ref["accuracy"]) and got["ff.auc"] == pytest.approx(ref["auc"])
    # contiguous folds of 700 are exactly the ten splits
    acc = []
    for k in range(10):
        test = np.arange(700 * k, 700 * (k + 1))
        rest = np.setdiff1d(np.arange(7000), test)
        from evaluations.verification import _best_threshold
        t = _best_threshold(np.asarray(scores)[rest], bench.same[rest])
        acc.append(np.mean((np.asarray(scores)[test] > t) == bench.same[test]))
    assert got["ff.accuracy"] == pytest.approx(np.mean(acc))


def test_split_only_keeps_one_split_with_balanced_inner_folds(cfp):
    bench = benchmarks.load(config.BenchmarkConfig(kind="cfp", path=str(cfp), protocol="FP", name="fp"), size=16)
    three = bench.split_only(3)
    assert len(three.same) == 700 and three.same.sum() == 350 and three.inner_threshold
    assert {p for p in three.people} <= set(bench.people) and len(set(three.people)) == 50
    order = benchmarks.inner_folds(three.same)
    for block in np.array_split(three.same[order], 10):
        assert block.sum() == 35 and len(block) == 70


def test_the_cfp_source_names_people_and_records_the_pose(cfp):
    data = load(f"cfp:{cfp}", size=16, stream=True)
    assert data.num_identities == 500 and len(data) == 7000 and data.named
    assert data.identities[0] == (cfp / "Data" / "list_name.txt").read_text().splitlines()[0].strip()
    assert sorted(set(data.subfolders)) == ["frontal", "profile"]
    assert data.subfolders.count("profile") == 2000
    bench = benchmarks.load(config.BenchmarkConfig(kind="cfp", path=str(cfp), protocol="FP", name="fp"), size=16)
    found = leakage.overlap(data, files=bench.split_only(1).files, people=None, named=False)
    assert sorted(found.identities) == list(range(50)) and found.by_file == 50


def test_names_overlap_across_spellings():
    assert leakage.normalise(" Aaron_Eckhart ") == leakage.normalise("aaron eckhart")
