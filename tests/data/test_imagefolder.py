"""``imagefolder:PATH`` reads what Pillow reads, scales 16-bit grey, and says what it skipped."""
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlcompare.data import imagefolder
from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError

SIZE = 12


def grey(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def palette_image(seed: int) -> Image.Image:
    """A ``P`` image with 8 colours: GIF stores it exactly, so GIF and PNG must read the same."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 8, (SIZE, SIZE), dtype=np.uint8), mode="P")
    img.putpalette(rng.integers(0, 256, 8 * 3, dtype=np.uint8).tolist())
    return img


def faces() -> dict[str, list[Image.Image]]:
    return {"a": [Image.fromarray(grey(i)) for i in range(3)], "b": [palette_image(i) for i in range(2)]}


def save(root: Path, *, fmt: str, name: str) -> Path:
    """Every image of :func:`faces` as ``root/<identity>/<name % i>`` in Pillow format ``fmt``."""
    for identity, images in faces().items():
        (root / identity).mkdir(parents=True)
        for i, img in enumerate(images):
            img.save(root / identity / (name % i), format=fmt)
    return root


def load_quiet(root: Path) -> FaceData:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these folders are clean: any warning is a defect
        return imagefolder.load(str(root), size=SIZE)


def test_gif_keeps_these_images_exactly():
    """The premise of the next test: a GIF of :func:`faces` holds the same pixels as a PNG."""
    for img in (img for images in faces().values() for img in images):
        buf = io.BytesIO()
        img.save(buf, format="GIF")
        assert np.array_equal(np.asarray(Image.open(buf).convert("RGB")), np.asarray(img.convert("RGB")))


@pytest.mark.parametrize("fmt, name", [("GIF", "%d.gif"), ("GIF", "subject%02d.happy"), ("PNG", "face%d")])
def test_gif_and_extensionless_files_read_like_png(tmp_path, fmt, name):
    png = load_quiet(save(tmp_path / "png", fmt="PNG", name="%d.png"))
    other = load_quiet(save(tmp_path / "other", fmt=fmt, name=name))
    assert other.identities == png.identities == ["a", "b"]
    assert torch.equal(other.labels, png.labels) and other.labels.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(other.images, png.images)
    # and both are the pixels themselves, grey repeated, palette expanded (SIZE px: no resampling)
    expected = np.stack([np.asarray(img.convert("RGB")).transpose(2, 0, 1) for ims in faces().values() for img in ims])
    assert np.array_equal(png.images.numpy(), expected)


def test_a_folder_of_non_images_is_reported_not_dropped_silently(tmp_path):
    save(tmp_path, fmt="PNG", name="%d.png")
    (tmp_path / "a" / "notes.txt").write_text("taken in 1994\n")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "Thumbs.db").write_bytes(b"\x00" * 64)
    (tmp_path / "c" / "labels.csv").write_text("id,name\n")
    (tmp_path / "d").mkdir()
    with pytest.warns(UserWarning) as record:
        data = imagefolder.load(str(tmp_path), size=SIZE)
    messages = [str(w.message) for w in record]
    assert data.identities == ["a", "b"] and len(data) == 5
    assert any(m.endswith(f"dropped 2 identity folder(s) with no readable images, e.g. {tmp_path / 'c'}")
               for m in messages), messages
    assert any("skipped 3 file(s) that Pillow does not recognise as images" in m for m in messages), messages
    assert all("\n" not in m for m in messages)


@pytest.mark.filterwarnings("ignore:.*does not recognise as images")
def test_only_non_images_is_an_error_that_says_so(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.warns(UserWarning, match="dropped 1 identity folder"), pytest.raises(UserError, match="holds no images"):
        imagefolder.load(str(tmp_path), size=SIZE)


def sixteen_bit() -> np.ndarray:
    """Every corner of the range: 0, 65535, and values either side of each rounding boundary."""
    values = 257 * np.repeat(np.arange(256), 4) + np.tile([0, 128, 129, 256], 256)
    return values.clip(0, 65535).astype(np.uint16).reshape(32, 32)


def write_sixteen_bit(folder: Path, wide: np.ndarray) -> list[Path]:
    folder.mkdir()
    little = Image.fromarray(wide)
    assert little.mode == "I;16"
    big = Image.frombytes("I;16B", little.size, wide.astype(">u2").tobytes())
    paths = [folder / "little.png", folder / "big.tif", folder / "int32.tif"]
    little.save(paths[0])
    big.save(paths[1])
    Image.fromarray(wide.astype(np.int32)).save(paths[2])  # mode "I"
    assert [Image.open(p).mode for p in paths] == ["I;16", "I;16B", "I"]
    return paths


def test_sixteen_bit_grey_reads_like_its_eight_bit_version(tmp_path):
    wide = sixteen_bit()
    # round(v / 257) by integers: v = 257 q + r reads as q, or q + 1 when r > 128
    q, r = np.divmod(wide.astype(np.int64), 257)
    narrow = (q + (r > 128)).astype(np.uint8)
    assert narrow.min() == 0 and narrow.max() == 255
    Image.fromarray(narrow).save(tmp_path / "narrow.png")
    eight = imagefolder.read_image(tmp_path / "narrow.png", 32)
    assert np.array_equal(eight, np.stack([narrow] * 3))
    for path in write_sixteen_bit(tmp_path / "wide", wide):
        assert np.array_equal(imagefolder.read_image(path, 32), eight), path.name
        # resized, the 16-bit file still reads as the 8-bit one does
        assert np.array_equal(imagefolder.read_image(path, 7), imagefolder.read_image(tmp_path / "narrow.png", 7))


def test_nested_folders_and_root_files_are_named_hidden_ones_are_not(tmp_path):
    save(tmp_path, fmt="PNG", name="%d.png")
    (tmp_path / "a" / "sub").mkdir()
    Image.fromarray(grey(9)).save(tmp_path / "a" / "sub" / "9.png")
    (tmp_path / "a" / "sub2").mkdir()
    (tmp_path / "README").write_text("40 people\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.fromarray(grey(8)).save(tmp_path / ".ipynb_checkpoints" / "0.png")
    with pytest.warns(UserWarning) as record:
        data = imagefolder.load(str(tmp_path), size=SIZE)
    messages = sorted(str(w.message) for w in record)
    source = f"imagefolder:{tmp_path}"
    assert messages == [
        f"{source}: skipped 1 file(s) at the root (images are read from PATH/<identity>/), e.g. {tmp_path / 'README'}",
        f"{source}: skipped 2 folder(s) nested in identity folders (not flattened: identities are PATH's immediate "
        f"sub-folders; imagefolder:PATH,nested=true reads them), e.g. {tmp_path / 'a' / 'sub'}",
    ]
    assert data.identities == ["a", "b"] and data.labels.tolist() == [0, 0, 0, 1, 1]


@pytest.mark.filterwarnings("ignore:.*with no readable images")
def test_a_nested_layout_read_one_level_too_high_points_at_the_right_level(tmp_path):
    # omniglot-like: alphabet/character/image; PATH=alphabet's parent gives identities without images
    for alphabet in ("greek", "latin"):
        save(tmp_path / alphabet, fmt="PNG", name="%d.png")
    with pytest.warns(UserWarning, match=r"skipped 4 folder\(s\) nested in identity folders"), \
            pytest.raises(UserError, match="point PATH at the level whose sub-folders are the identities"):
        imagefolder.load(str(tmp_path), size=SIZE)
    # one level down, the characters are the identities
    assert load_quiet(tmp_path / "greek").identities == ["a", "b"]


def test_unreadable_files_stay_one_line_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.jpg").write_bytes(b"a suffix that claims an image")
    with pytest.raises(UserError, match=r"^cannot read image .*0\.jpg: UnidentifiedImageError; remove or replace"):
        imagefolder.read_image(tmp_path / "a" / "0.jpg", SIZE)
    Image.fromarray(grey(0)).save(tmp_path / "a" / "1.png")
    (tmp_path / "a" / "2.png").write_bytes((tmp_path / "a" / "1.png").read_bytes()[:60])  # truncated
    with pytest.raises(UserError, match=r"cannot read image .*0\.jpg"):
        imagefolder.load(str(tmp_path), size=SIZE)
    (tmp_path / "a" / "0.jpg").unlink()
    with pytest.raises(UserError, match=r"cannot read image .*2\.png: OSError"):
        imagefolder.load(str(tmp_path), size=SIZE)
