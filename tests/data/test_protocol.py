import torch

from mlcompare.data.facedata import FaceData
from mlcompare.data.protocol import identification_split, split_identities, verification_pairs
from mlcompare.data.sampler import PKSampler


def make_data(identities: int = 20, per: int = 5) -> FaceData:
    labels = torch.arange(identities).repeat_interleave(per)
    images = torch.randint(0, 255, (len(labels), 3, 8, 8), dtype=torch.uint8)
    return FaceData(images, labels, [f"id{i}" for i in range(identities)], "test")


def test_split_identities_is_disjoint_seeded_and_complete():
    data = make_data()
    train, test = split_identities(data, test_fraction=0.3, seed=1)
    assert set(train.identities).isdisjoint(test.identities)
    assert len(train) + len(test) == len(data)
    assert test.num_identities == 6 and train.num_identities == 14
    # relabelled 0..C-1 on each side
    assert train.labels.max() == 13 and test.labels.max() == 5
    again = split_identities(data, test_fraction=0.3, seed=1)[1]
    assert again.identities == test.identities
    assert split_identities(data, test_fraction=0.3, seed=2)[1].identities != test.identities


def test_verification_pairs_are_balanced_per_fold_and_correct():
    labels = make_data(30, 6).labels
    pairs = verification_pairs(labels, pairs=600, folds=10, seed=0)
    assert len(pairs.same) == 600
    for fold in pairs.same.view(10, 60):
        assert fold.sum() == 30
    assert torch.equal(labels[pairs.a] == labels[pairs.b], pairs.same)
    assert (pairs.a != pairs.b).all()
    keys = {(min(a, b), max(a, b)) for a, b in zip(pairs.a.tolist(), pairs.b.tolist())}
    assert len(keys) == 600  # no pair twice
    again = verification_pairs(labels, pairs=600, folds=10, seed=0)
    assert torch.equal(again.a, pairs.a) and torch.equal(again.b, pairs.b)


def test_verification_pairs_limited_by_genuine_pairs_stay_balanced():
    labels = torch.arange(10).repeat_interleave(2)  # 10 genuine pairs in all
    pairs = verification_pairs(labels, pairs=600, folds=10, seed=0)
    assert pairs.same.sum() == 10 and (~pairs.same).sum() == 10


def test_identification_split_one_gallery_image_per_identity():
    labels = make_data(12, 4).labels
    gallery, probes = identification_split(labels, seed=3)
    assert sorted(labels[gallery].tolist()) == list(range(12))
    assert set(gallery.tolist()).isdisjoint(probes.tolist())
    assert len(gallery) + len(probes) == len(labels)


def test_pk_sampler_gives_p_identities_times_k_images_deterministically():
    labels = torch.tensor([0] * 3 + [1] * 8 + [2] * 5 + [3] * 6 + [4] * 2 + [5] * 4)
    sampler = PKSampler(labels, p=3, k=4, seed=7)
    for step in range(6):
        batch = sampler.batch(step)
        assert len(batch) == 12
        ids = labels[batch].view(3, 4)
        assert (ids == ids[:, :1]).all() and len(set(ids[:, 0].tolist())) == 3
        # identities with >= k images give k distinct images
        for row, idx in zip(ids, batch.view(3, 4)):
            if (labels == row[0]).sum() >= 4:
                assert len(set(idx.tolist())) == 4
        assert torch.equal(batch, PKSampler(labels, p=3, k=4, seed=7).batch(step))
    # an epoch covers each identity once (6 identities, p=3: 2 batches)
    seen = torch.cat([labels[sampler.batch(s)].view(3, 4)[:, 0] for s in (0, 1)])
    assert sorted(seen.tolist()) == list(range(6))
    assert not torch.equal(sampler.batch(0), PKSampler(labels, p=3, k=4, seed=8).batch(0)) or \
        not torch.equal(sampler.batch(1), PKSampler(labels, p=3, k=4, seed=8).batch(1))
