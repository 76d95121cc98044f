import torch

from mlcompare.data.facedata import FaceData
from mlcompare.data.noise import flip_labels


def test_flip_labels_changes_exactly_the_recorded_share_to_other_identities():
    labels = torch.arange(10).repeat_interleave(20)
    data = FaceData(torch.zeros(200, 3, 4, 4, dtype=torch.uint8), labels, [str(i) for i in range(10)], "t")
    noisy = flip_labels(data, 0.3, seed=1)
    changed = noisy.labels != labels
    assert int(changed.sum()) == 60
    assert torch.equal(changed, noisy.noisy)
    assert noisy.labels.min() >= 0 and noisy.labels.max() <= 9
    assert torch.equal(flip_labels(data, 0.3, seed=1).labels, noisy.labels)
    assert flip_labels(data, 0.0, seed=1) is data


def test_flipped_set_keeps_the_ground_truth_quality_of_each_image():
    labels = torch.arange(4).repeat_interleave(5)
    degradation = torch.linspace(0, 1, 20)
    data = FaceData(torch.zeros(20, 3, 4, 4, dtype=torch.uint8), labels, [str(i) for i in range(4)], "t",
                    quality={"degradation": degradation})
    assert torch.equal(flip_labels(data, 0.5, seed=0).quality["degradation"], degradation)
