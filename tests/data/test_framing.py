"""Crop and resize of a photograph, against hand computations on a synthetic non-square image."""
import numpy as np
import pytest
from PIL import Image

from mlcompare.data.framing import Framing
from mlcompare.data.imagefolder import read_image


def gradient(width: int, height: int) -> Image.Image:
    """R = x, G = y, B = 0: every pixel names its own position."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], axis=-1).astype(np.uint8))


def test_centre_crop_is_a_square_of_the_fraction_of_the_shorter_side():
    # 105 x 137 (a tight CFP crop): side round(0.5 * 105) = 52 (round half to even), left (105 - 52) // 2 = 26,
    # top (137 - 52) // 2 = 42
    assert Framing(crop=0.5).crop_of(105, 137) == (26, 42, 78, 94)
    assert Framing(crop=1.0).crop_of(250, 250) == (0, 0, 250, 250)
    assert Framing().crop_of(40, 30) is None


def test_crop_then_resize_keeps_exactly_the_cropped_pixels():
    img = gradient(105, 137)
    # a 52-pixel crop resized to 52 is the crop itself: pixel (i, j) holds x = 26 + j, y = 42 + i
    out = np.asarray(Framing(crop=0.5).apply(img, 52))
    assert out.shape == (52, 52, 3)
    assert out[0, 0].tolist() == [26, 42, 0] and out[51, 51].tolist() == [77, 93, 0]
    box = np.asarray(Framing(box=(10, 20, 40, 60)).apply(img, 16))
    manual = np.asarray(img.crop((10, 20, 40, 60)).resize((16, 16), Image.BILINEAR))
    assert np.array_equal(box, manual)


def test_keep_aspect_resizes_the_shorter_side_and_centre_crops_the_longer():
    img = gradient(100, 200)
    # shorter side 100 -> 50: the image becomes 50 x 100, its centre 50 rows (25 .. 74) are kept
    out = np.asarray(Framing(keep_aspect=True).apply(img, 50))
    manual = np.asarray(img.resize((50, 100), Image.BILINEAR))[25:75]
    assert np.array_equal(out, manual)
    squashed = np.asarray(Framing().apply(img, 50))
    assert np.array_equal(squashed, np.asarray(img.resize((50, 50), Image.BILINEAR)))
    assert not np.array_equal(out, squashed)


def test_a_square_photo_and_its_tight_crop_come_to_the_same_framing():
    # A 250 x 250 photo whose middle 125 x 125 is the face, and that face saved on its own.
    photo = gradient(250, 250)
    face = photo.crop((62, 62, 187, 187))
    assert np.array_equal(np.asarray(Framing(crop=0.5).apply(photo, 32)), np.asarray(Framing().apply(face, 32)))


def test_read_image_applies_the_framing_and_the_default_is_the_old_squash(tmp_path):
    gradient(105, 137).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png", 20),
                          np.asarray(gradient(105, 137).resize((20, 20), Image.BILINEAR)).transpose(2, 0, 1))
    framed = read_image(tmp_path / "a.png", 52, Framing(crop=0.5))
    assert framed[:, 0, 0].tolist() == [26, 42, 0]


def test_bad_framings_are_refused():
    with pytest.raises(ValueError, match="not both"):
        Framing(crop=0.5, box=(0, 0, 4, 4))
    with pytest.raises(ValueError, match="left < right"):
        Framing(box=(5, 0, 4, 4))
    with pytest.raises(ValueError, match="beyond a 40 x 30 image"):
        Framing(box=(0, 0, 50, 10)).crop_of(40, 30)
