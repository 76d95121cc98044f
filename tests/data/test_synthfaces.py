"""synthfaces: determinism, subset agreement, knobs, label noise and honest difficulty (raw pixels)."""
from __future__ import annotations

import math

import pytest
import torch

from mlcompare.data import synthfaces
from mlcompare.data.synthfaces_random import hash32
from mlcompare.errors import UserError


def raw_pixel_rank1(data) -> float:
    """Rank-1 of raw-pixel cosine nearest neighbour: gallery = first image of each identity, probes = the rest."""
    x = torch.nn.functional.normalize(data.images.float().flatten(1), dim=1)
    first = torch.ones(len(data), dtype=torch.bool)
    first[1:] = data.labels[1:] != data.labels[:-1]
    gallery, gallery_labels = x[first], data.labels[first]
    probes, probe_labels = x[~first], data.labels[~first]
    best = (probes @ gallery.T).argmax(1)
    return float((gallery_labels[best] == probe_labels).float().mean())


def best_threshold_accuracy(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Verification accuracy on a balanced set at the best similarity threshold (scores: higher = same)."""
    n = min(len(positive), len(negative))
    scores = torch.cat([positive[:n], negative[:n]])
    same = torch.cat([torch.ones(n), torch.zeros(n)])
    best = 0.0
    for threshold in scores.tolist():
        best = max(best, float(((scores >= threshold).float() == same).float().mean()))
    return best


def test_hash_matches_a_python_reference():
    def lowbias32(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    values = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    assert hash32(torch.tensor(values, dtype=torch.int64)).tolist() == [lowbias32(v) for v in values]


def test_shapes_dtype_and_labels():
    data = synthfaces.load(size=32, identities=5, images_per_identity=3)
    assert data.images.shape == (15, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.images.device.type == "cpu"
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert data.identities == [f"synth{j:05d}" for j in range(5)]
    assert data.noisy is not None and not bool(data.noisy.any())
    # faces, not flat fields: every image has contrast
    assert bool((data.images.float().flatten(1).std(1) > 10).all())


@pytest.mark.parametrize("size", [16, 48, 112])
def test_other_sizes_render(size):
    data = synthfaces.load(size=size, identities=2, images_per_identity=2, difficulty=0.5)
    assert data.images.shape == (4, 3, size, size)


def test_same_seed_same_tensors_and_other_seed_differs():
    a = synthfaces.load(size=32, identities=6, images_per_identity=4, seed=3, label_noise=0.3)
    b = synthfaces.load(size=32, identities=6, images_per_identity=4, seed=3, label_noise=0.3)
    c = synthfaces.load(size=32, identities=6, images_per_identity=4, seed=4, label_noise=0.3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.noisy, b.noisy)
    assert not torch.equal(a.images, c.images)


def test_image_k_of_identity_j_is_the_same_in_a_small_and_a_large_set():
    small = synthfaces.load(size=16, identities=100, images_per_identity=2, seed=7, label_noise=0.2)
    large = synthfaces.load(size=16, identities=1000, images_per_identity=2, seed=7, label_noise=0.2)
    assert torch.equal(small.images, large.images[: len(small)])
    assert torch.equal(small.noisy, large.noisy[: len(small)])  # which images are mislabelled: per image too
    more_images = synthfaces.load(size=16, identities=100, images_per_identity=3, seed=7, label_noise=0.2)
    k_below_2 = torch.arange(len(more_images)) % 3 < 2
    assert torch.equal(more_images.images[k_below_2], small.images)


def test_difficulty_zero_makes_all_images_of_an_identity_identical():
    data = synthfaces.load(size=32, identities=4, images_per_identity=3, difficulty=0.0)
    for j in range(4):
        block = data.images[data.labels == j]
        assert torch.equal(block[0], block[1]) and torch.equal(block[0], block[2])
    assert not torch.equal(data.images[0], data.images[3])


def test_one_nuisance_can_be_set_alone():
    clean = synthfaces.load(size=32, identities=3, images_per_identity=3, difficulty=0.0)
    posed = synthfaces.load(size=32, identities=3, images_per_identity=3, difficulty=0.0, pose=1.0)
    assert not torch.equal(clean.images, posed.images)
    # pose moves the face, not the background corners
    assert torch.equal(clean.images[:, :, :2, :2], posed.images[:, :, :2, :2])


@pytest.mark.parametrize(
    "knob, value",
    [("identities", 1), ("identities", 2.5), ("images_per_identity", 0), ("size", 8), ("difficulty", -0.1),
     ("lookalike_share", 1.5), ("longtail_exponent", -1.0), ("label_noise", 0.95), ("pose", 4.0), ("seed", -1),
     ("blur", True)],
)
def test_invalid_knobs_raise_one_line_naming_the_knob(knob, value):
    with pytest.raises(UserError, match=knob) as info:
        synthfaces.load(**{"size": 32, "identities": 3, "images_per_identity": 2, knob: value})
    assert "\n" not in str(info.value)


def test_unknown_knob_is_a_type_error():
    with pytest.raises(TypeError):
        synthfaces.load(size=32, identites=3)  # misspelt on purpose


def test_longtail_counts_follow_the_power_law():
    counts = synthfaces.image_counts(50, 40, 1.0)
    expected = [max(2, round(40 / (j + 1))) for j in range(50)]
    assert counts.tolist() == expected
    data = synthfaces.load(size=16, identities=50, images_per_identity=40, longtail_exponent=1.0, difficulty=0.0)
    assert torch.bincount(data.labels, minlength=50).tolist() == expected
    assert synthfaces.image_counts(5, 7, 0.0).tolist() == [7] * 5


def test_label_noise_fraction_matches_the_knob_and_noisy_labels_are_wrong():
    identities, per = 400, 10
    data = synthfaces.load(size=16, identities=identities, images_per_identity=per, label_noise=0.2, difficulty=0.0)
    true = torch.arange(identities).repeat_interleave(per)
    n = len(data)
    fraction = float(data.noisy.float().mean())
    assert abs(fraction - 0.2) < 3 * math.sqrt(0.2 * 0.8 / n)
    assert torch.equal(data.labels[~data.noisy], true[~data.noisy])
    assert bool((data.labels[data.noisy] != true[data.noisy]).all())
    assert int(data.labels.max()) < identities and int(data.labels.min()) >= 0


def test_families_group_lookalikes_and_share_follows_the_knob():
    family = synthfaces.families(4000, seed=1, lookalike_share=0.5)
    share = float((family >= 0).float().mean())
    assert 0.4 < share < 0.6  # 1,000 families of 4: sd of the share ~0.016
    members = family[family >= 0]
    assert bool((members == torch.arange(4000)[family >= 0] // synthfaces.FAMILY_SIZE).all())
    assert bool((synthfaces.families(100, lookalike_share=0.0) == -1).all())
    assert bool((synthfaces.families(100, lookalike_share=1.0) >= 0).all())
    # the answer for identity j does not depend on how many identities there are
    assert torch.equal(synthfaces.families(40, seed=1), synthfaces.families(4000, seed=1)[:40])


def test_lookalike_parameters_are_closer_than_random_pairs():
    params = synthfaces.identity_parameters(400, seed=2, lookalike_share=1.0)
    siblings = (params[0::4] - params[1::4]).norm(dim=1).mean()
    strangers = (params[0::4] - params[torch.arange(0, 400, 4).roll(1) + 1]).norm(dim=1).mean()
    assert siblings < 0.5 * strangers


def test_raw_pixels_rank1_is_low_at_default_difficulty_and_high_at_zero():
    default = raw_pixel_rank1(synthfaces.load(size=32, identities=200, images_per_identity=4, seed=11))
    easy = raw_pixel_rank1(synthfaces.load(size=32, identities=200, images_per_identity=4, seed=11, difficulty=0.0))
    half = raw_pixel_rank1(synthfaces.load(size=32, identities=200, images_per_identity=4, seed=11, difficulty=0.5))
    assert 0.03 <= default <= 0.30, default
    assert easy > 0.95 and half > default + 0.1, (easy, half, default)


def test_lookalike_negatives_are_harder_than_random_negatives_for_raw_pixels():
    identities, per = 160, 4
    data = synthfaces.load(size=32, identities=identities, images_per_identity=per, seed=5, lookalike_share=1.0)
    x = torch.nn.functional.normalize(data.images.float().flatten(1), dim=1)
    similarity = x @ x.T
    labels = data.labels
    family = synthfaces.families(identities, seed=5, lookalike_share=1.0)[labels]
    upper = torch.triu(torch.ones_like(similarity, dtype=torch.bool), diagonal=1)
    same = labels[:, None] == labels[None, :]
    kin = (family[:, None] == family[None, :]) & ~same
    positive = similarity[upper & same]
    lookalike = similarity[upper & kin]
    strangers = similarity[upper & ~same & ~kin]
    generator = torch.Generator().manual_seed(0)
    strangers = strangers[torch.randperm(len(strangers), generator=generator)[: len(lookalike)]]
    hard = best_threshold_accuracy(positive, lookalike)
    easy = best_threshold_accuracy(positive, strangers)
    assert hard < easy - 0.03, (hard, easy)
    assert float(lookalike.mean()) > float(strangers.mean())


def test_drawing_features_on_row_bands_is_exact(monkeypatch):
    from mlcompare.data import synthfaces_render

    kwargs = dict(size=48, identities=40, images_per_identity=2, seed=9, difficulty=1.5)
    banded = synthfaces.load(**kwargs)
    monkeypatch.setattr(synthfaces_render.Canvas, "rows", lambda self, top, bottom: slice(None))
    everywhere = synthfaces.load(**kwargs)
    assert torch.equal(banded.images, everywhere.images)


def test_an_unusable_device_is_a_one_line_value_error():
    with pytest.raises(UserError, match="device"):
        synthfaces.load(size=32, identities=2, images_per_identity=2, device="no-such-device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_gpu_render_matches_cpu_within_a_grey_level():
    cpu = synthfaces.load(size=32, identities=8, images_per_identity=3)
    gpu = synthfaces.load(size=32, identities=8, images_per_identity=3, device="cuda")
    assert gpu.images.device.type == "cuda"  # rendered on the training device, kept there
    assert float((cpu.images.float() - gpu.images.cpu().float()).abs().mean()) < 1.0


def test_knobs_list_matches_the_keywords_of_load():
    import inspect

    keywords = set(inspect.signature(synthfaces.load).parameters) - {"size", "seed"}
    assert keywords == set(synthfaces.KNOBS)
