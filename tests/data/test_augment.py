"""Train-time augmentation: seeded per step (same seed, same batch), a share of a global batch equal
to the single-process rows, the random resized crop against its formula, and none at test time."""
import math

import numpy as np
import torch

from mlcompare.data.augment import Augmentation, crop_boxes, generator, jitter, resized_crops


def batch(n: int = 6, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def test_same_seed_and_step_same_batch_and_another_step_another():
    aug = Augmentation(flip=True, random_crop=(0.5, 1.0), color_jitter=0.3)
    x = batch()
    a = aug(x, seed=3, step=7, local=slice(None), batch_size=6)
    assert torch.equal(a, aug(x, seed=3, step=7, local=slice(None), batch_size=6))
    assert not torch.equal(a, aug(x, seed=3, step=8, local=slice(None), batch_size=6))
    assert not torch.equal(a, aug(x, seed=4, step=7, local=slice(None), batch_size=6))


def test_a_ranks_share_is_those_rows_of_the_single_process_batch():
    aug = Augmentation(flip=True, random_crop=(0.5, 1.0), color_jitter=0.3)
    x = batch()
    whole = aug(x, seed=0, step=2, local=slice(None), batch_size=6)
    share = aug(x[3:], seed=0, step=2, local=slice(3, 6), batch_size=6)
    assert torch.equal(share, whole[3:])


def test_the_flip_alone_is_the_trainers_historical_flip():
    # Before augmentation existed the trainer drew rand(batch) < 0.5 from manual_seed(seed * 1_000_003 + step).
    x = batch()
    flip = torch.rand(6, generator=torch.Generator().manual_seed(5 * 1_000_003 + 9)) < 0.5
    expected = torch.where(flip[:, None, None, None], x.flip(-1), x)
    assert torch.equal(Augmentation(flip=True)(x, seed=5, step=9, local=slice(None), batch_size=6), expected)
    assert torch.equal(Augmentation(flip=False)(x, seed=5, step=9, local=slice(None), batch_size=6), x)


def test_crop_boxes_follow_the_formula():
    boxes = crop_boxes(2000, (0.3, 0.6), generator(0, 0, 1)).double()
    x0, y0, w, h = boxes.unbind(1)
    area, ratio = w * h, w / h
    unclipped = (w < 1) & (h < 1)
    assert ((area[unclipped] >= 0.3 - 1e-6) & (area[unclipped] <= 0.6 + 1e-6)).all()
    assert ((ratio >= 3 / 4 - 1e-6) & (ratio <= 4 / 3 + 1e-6)).all()
    assert ((x0 >= 0) & (x0 + w <= 1 + 1e-6) & (y0 >= 0) & (y0 + h <= 1 + 1e-6)).all()


def test_a_resized_crop_of_a_box_matches_sampling_by_hand():
    # A linear ramp image: bilinear sampling of a linear function is exact, so the output pixel
    # (i, j) of box (x0, y0, w, h) holds the ramp at x = x0 + w (j + 0.5) / S in pixels (minus the half pixel).
    size = 16
    ramp = torch.arange(size, dtype=torch.float32).repeat(size, 1)[None, None].repeat(1, 3, 1, 1)
    box = torch.tensor([[0.25, 0.125, 0.5, 0.5]])
    out = resized_crops(ramp, box)[0, 0]
    j = torch.arange(size, dtype=torch.float32)
    expected = (0.25 + 0.5 * (j + 0.5) / size) * size - 0.5
    assert torch.allclose(out[3], expected, atol=1e-4)
    assert torch.allclose(resized_crops(ramp, torch.tensor([[0.0, 0.0, 1.0, 1.0]])), ramp, atol=1e-4)


def test_jitter_by_hand_on_one_pixel():
    x = torch.tensor([100.0, 50.0, 20.0]).reshape(1, 3, 1, 1)
    out = jitter(x, torch.tensor([[1.2, 1.0, 0.5]]))[0, :, 0, 0]
    bright = np.array([120.0, 60.0, 24.0])
    grey = 0.299 * 120 + 0.587 * 60 + 0.114 * 24
    assert np.allclose(out.numpy(), (bright - grey) * 0.5 + grey, atol=1e-4)


def test_test_images_are_never_augmented(tiny_run):
    # Scoring embeds test images straight from the test set: the validation and final embeddings of a
    # run with augmentation come from the same, unaugmented images (the trainer alone calls Augmentation).
    import inspect

    from mlcompare.run import runner, scoring

    assert "Augmentation" not in inspect.getsource(scoring) and "augment" not in inspect.getsource(runner)
