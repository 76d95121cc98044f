"""synthfaces' ground-truth quality: realised strengths, degradation, carried through FaceData, export CSV, sorted preview."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from mlcompare.data import synthfaces
from mlcompare.data.facedata import FaceData
from mlcompare.data.preview import GAP, MIN_CELL, contact_sheet, export_imagefolder, quality_csv_path
from mlcompare.data.synthfaces_render import NUISANCES
from mlcompare.errors import UserError

SMALL = dict(size=32, identities=6, images_per_identity=10, seed=4)


def test_every_image_has_each_strength_and_a_degradation_in_unit_range():
    data = synthfaces.load(**SMALL)
    assert list(data.quality) == [*NUISANCES, "degradation"]
    for name, values in data.quality.items():
        assert values.shape == (60,) and values.dtype == torch.float32
        assert float(values.min()) >= 0 and float(values.max()) <= 1, name
    stacked = torch.stack([data.quality[n] for n in NUISANCES])
    torch.testing.assert_close(data.quality["degradation"], stacked.mean(0))
    assert float(data.quality["degradation"].std()) > 0.02  # images differ in quality


def test_zero_difficulty_means_zero_degradation():
    assert float(synthfaces.load(**SMALL, difficulty=0.0).quality["degradation"].abs().max()) == 0.0


@pytest.mark.parametrize("knob", NUISANCES)
def test_degradation_is_monotone_in_each_nuisance_knob(knob):
    low = synthfaces.load(**SMALL, **{knob: 0.3}).quality
    high = synthfaces.load(**SMALL, **{knob: 0.8}).quality
    rise = high["degradation"] - low["degradation"]
    assert bool((rise >= -1e-7).all())  # never lower, image by image (same shots: all else equal)
    assert float(rise.max()) > 0.0
    for other in NUISANCES:
        if other != knob:
            torch.testing.assert_close(high[other], low[other])
    assert bool((high[knob] >= low[knob]).all())


def test_more_blur_gives_higher_degradation_image_by_image():
    low = synthfaces.load(**SMALL, blur=0.5).quality["degradation"]
    high = synthfaces.load(**SMALL, blur=1.0).quality["degradation"]
    assert bool((high > low).all())  # blur share u * strength < 1 for every u < 1: strictly more


@pytest.mark.parametrize("knob", ["blur", "noise"])
def test_realised_strength_is_what_the_renderer_drew(knob):
    """Pixel change caused by the nuisance grows with the realised strength recorded for it."""
    clean = synthfaces.load(**SMALL, **{knob: 0.0})
    dirty = synthfaces.load(**SMALL, **{knob: 1.0})
    change = (dirty.images.float() - clean.images.float()).abs().mean(dim=(1, 2, 3)).numpy()
    strength = dirty.quality[knob].numpy()
    assert np.corrcoef(change, strength)[0, 1] > 0.9
    assert float(clean.quality[knob].abs().max()) == 0.0


def test_quality_follows_the_images_through_subset_to_and_in_memory():
    data = synthfaces.load(**SMALL)
    index = torch.tensor([5, 0, 33, 12])
    part = data.subset(index)
    for name in data.quality:
        torch.testing.assert_close(part.quality[name], data.quality[name][index])
    assert part.to("cpu").quality is part.quality
    assert part.in_memory(progress=False).quality is part.quality
    with pytest.raises(ValueError, match="quality"):
        FaceData(data.images, data.labels, data.identities, "x", None, {"degradation": torch.zeros(3)})


def test_export_writes_a_quality_csv_beside_the_folder(tmp_path):
    data = synthfaces.load(size=16, identities=2, images_per_identity=3, seed=1)
    out = export_imagefolder(data, tmp_path / "faces")
    path = quality_csv_path(out)
    assert path == tmp_path / "faces.quality.csv"
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 6 and list(rows[0]) == ["path", "identity", *NUISANCES, "degradation"]
    for i, row in enumerate(rows):
        assert (out / row["path"]).is_file()
        assert row["identity"] == data.identities[int(data.labels[i])]
        assert float(row["degradation"]) == pytest.approx(float(data.quality["degradation"][i]), abs=1e-6)


def test_other_sources_have_no_quality_and_say_so(tmp_path):
    data = FaceData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 1, 1]), ["a", "b"], "imagefolder:x")
    assert data.quality is None
    out = export_imagefolder(data, tmp_path / "plain")
    assert not quality_csv_path(out).exists()
    with pytest.raises(UserError, match="imagefolder:x has no ground-truth image quality"):
        contact_sheet(data, tmp_path / "s.png", sort="degradation")


def test_sorted_preview_runs_from_least_to_most_degraded(tmp_path):
    images = torch.stack([torch.full((3, 8, 8), 10 * i, dtype=torch.uint8) for i in range(6)])
    degradation = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2, 0.7])
    data = FaceData(images, torch.tensor([0, 0, 0, 1, 1, 1]), ["a", "b"], "test", None, {"degradation": degradation})
    sheet = np.asarray(Image.open(contact_sheet(data, tmp_path / "s.png", identities=2, images=3, sort="degradation")))
    cell = 8 * (-(-MIN_CELL // 8))
    expected = [[1, 2, 0], [4, 3, 5]]  # image indices, least degraded first
    for row in range(2):
        for col in range(3):
            top, left = GAP + row * (cell + GAP), GAP + col * (cell + GAP)
            assert (sheet[top + cell // 2, left + cell // 2] == 10 * expected[row][col]).all()
