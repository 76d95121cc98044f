"""preview: contact sheet geometry and content, image-folder export (round trip, refusal, force)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mlcompare.data.facedata import FaceData
from mlcompare.data.preview import GAP, MIN_CELL, contact_sheet, export_imagefolder
from mlcompare.errors import UserError


def tiny_data(noisy: bool = False) -> FaceData:
    """3 identities x 2 images of 8x8, each image a distinct flat colour so cells can be checked."""
    images = torch.stack([torch.full((3, 8, 8), 10 * i, dtype=torch.uint8) for i in range(6)])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    flags = torch.tensor([False, False, False, True, False, False]) if noisy else None
    return FaceData(images, labels, ["ann", "bob/../x", "cy"], "test", flags)


def test_contact_sheet_places_identities_in_rows_and_images_in_columns(tmp_path):
    data = tiny_data()
    path = contact_sheet(data, tmp_path / "sub" / "grid.png", identities=2, images=3)
    sheet = np.asarray(Image.open(path))
    cell = 8 * (-(-MIN_CELL // 8))
    assert sheet.shape == (2 * (cell + GAP) + GAP, 3 * (cell + GAP) + GAP, 3)
    for row in range(2):
        for col in range(2):
            top, left = GAP + row * (cell + GAP), GAP + col * (cell + GAP)
            assert (sheet[top + cell // 2, left + cell // 2] == 10 * (2 * row + col)).all()
    # identity 1 has two images: the third column stays blank (white)
    assert (sheet[GAP + cell // 2, GAP + 2 * (cell + GAP) + cell // 2] == 255).all()


def test_contact_sheet_frames_noisy_labels_in_red(tmp_path):
    sheet = np.asarray(Image.open(contact_sheet(tiny_data(noisy=True), tmp_path / "g.png", identities=2, images=2)))
    cell = 8 * (-(-MIN_CELL // 8))
    top, left = GAP + (cell + GAP), GAP + (cell + GAP)  # identity 1, image 1: noisy
    assert sheet[top, left + cell // 2].tolist() == [255, 0, 0]
    assert sheet[top, GAP + cell // 2].tolist() == [10 * 2] * 3  # identity 1, image 0: clean


def test_contact_sheet_rejects_empty_request(tmp_path):
    with pytest.raises(UserError, match="identities"):
        contact_sheet(tiny_data(), tmp_path / "g.png", identities=0)


def test_export_round_trips_pixels_and_labels(tmp_path):
    data = tiny_data()
    out = export_imagefolder(data, tmp_path / "export")
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["ann", "bob_.._x", "cy"]
    for label, name in enumerate(folders):
        files = sorted((out / name).iterdir())
        assert len(files) == 2
        for file, index in zip(files, torch.nonzero(data.labels == label).squeeze(1).tolist()):
            pixels = np.asarray(Image.open(file)).transpose(2, 0, 1)
            assert np.array_equal(pixels, data.images[index].numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folder left behind


def test_export_refuses_a_non_empty_folder_without_force_and_replaces_with_force(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="force"):
        export_imagefolder(tiny_data(), target)
    assert (target / "keep.txt").read_text() == "mine"
    export_imagefolder(tiny_data(), target, force=True)
    assert not (target / "keep.txt").exists() and (target / "ann").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_export_into_an_existing_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    out = export_imagefolder(tiny_data(), tmp_path / "empty")
    assert len(list(out.iterdir())) == 3


def test_export_refuses_a_file_target(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file"):
        export_imagefolder(tiny_data(), tmp_path / "file", force=True)
