import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlcompare import data
from mlcompare.errors import UserError


def test_imagefolder_reads_orl_faces(att_faces):
    faces = data.load(f"imagefolder:{att_faces}", size=32)
    assert faces.num_identities == 40 and len(faces) == 400
    assert faces.images.shape == (400, 3, 32, 32) and faces.images.dtype == torch.uint8
    # grey PGM repeated to 3 channels
    assert torch.equal(faces.images[:, 0], faces.images[:, 1]) and torch.equal(faces.images[:, 1], faces.images[:, 2])
    # the pixels are the file's, resized: compare one image with Pillow directly
    first = sorted((att_faces / faces.identities[0]).iterdir())[0]
    expected = np.asarray(Image.open(first).convert("RGB").resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(faces.images[0].numpy(), expected)
    assert torch.bincount(faces.labels).tolist() == [10] * 40


def _write(folder: Path, counts: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (folder / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 16), dtype=np.uint8)).save(folder / name / f"{i}.png")


def test_imagefolder_drops_single_image_identities_with_a_count(tmp_path):
    _write(tmp_path, {"a": 3, "b": 2, "c": 1, "d": 1})
    with pytest.warns(UserWarning, match="dropped 2 identities with a single image"):
        faces = data.load(f"imagefolder:{tmp_path}", size=16)
    assert faces.identities == ["a", "b"] and len(faces) == 5


def test_one_image_per_identity_is_an_error(tmp_path):
    _write(tmp_path, {"a": 1, "b": 1, "c": 1})
    with pytest.warns(UserWarning), pytest.raises(UserError, match="0 identities with 2\\+ images; at least 2"):
        data.load(f"imagefolder:{tmp_path}", size=16)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.load(f"imagefolder:{tmp_path / 'nope'}", size=16)
    with pytest.raises(UserError, match="holds no images"):
        data.load(f"imagefolder:{tmp_path}", size=16)


def test_unreadable_image_is_named(tmp_path):
    _write(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(UserError, match=r"cannot read image .*broken\.png"):
        data.load(f"imagefolder:{tmp_path}", size=16)


def test_digits_and_unknown_source():
    digits = data.load("digits", size=16)
    assert digits.num_identities == 10 and len(digits) == 1797 and digits.images.shape[1:] == (3, 16, 16)
    assert digits.images.max() == 255  # the 0..16 scale is stretched to 0..255
    with pytest.raises(UserError, match="unknown data source 'nonsense'"):
        data.load("nonsense", size=16)
    with pytest.raises(UserError, match="not KEY=VALUE"):
        data.parse_options("identities")
    assert data.parse_options("a=1,b=0.5,c=true,d=x") == {"a": 1, "b": 0.5, "c": True, "d": "x"}


def test_recordio_spec_reads_insightface_files(tmp_path):
    from mlcompare.data.recordio import write_recordio

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (3, 12, 12), dtype=np.uint8) for _ in range(6)]
    write_recordio(tmp_path, images, [7, 7, 7, 9, 9, 9])
    faces = data.load(f"recordio:{tmp_path}", size=12)
    assert faces.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(faces.images[4].numpy(), images[4])
