import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlcompare import losses
from mlcompare.backbones import ResNetFace, embed
from mlcompare.data.facedata import FaceData
from mlcompare.run.runner import ANGLE_BINS, angle_histograms


@pytest.mark.parametrize("name", ["arcface", "softmax", "subcenter_arcface", "triplet"])
def test_angle_histograms_match_a_direct_computation(name):
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = losses.get(name, num_classes=4, embedding_dim=16)
    data = FaceData(torch.randint(0, 255, (20, 3, 16, 16), dtype=torch.uint8), torch.arange(4).repeat_interleave(5),
                    list("abcd"), "t")
    hist = angle_histograms(model, loss, data, torch.device("cpu"))
    if name == "triplet":
        assert hist == {}
        return
    emb = F.normalize(embed(model, data.images, device=torch.device("cpu")), dim=1)
    weight = F.normalize(loss.weight.detach(), dim=1)
    cos = emb @ weight.t()
    if name == "subcenter_arcface":  # rows are class-major sub-centres
        cos = cos.view(20, 4, -1).max(dim=2).values
    theta = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
    own = torch.nn.functional.one_hot(data.labels, 4).bool()
    np.testing.assert_array_equal(hist["theta_target_hist"], np.histogram(theta[own].numpy(), ANGLE_BINS)[0])
    np.testing.assert_array_equal(hist["theta_other_hist"], np.histogram(theta[~own].numpy(), ANGLE_BINS)[0])
