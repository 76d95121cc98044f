"""Backbones by name: shapes, published parameter counts and costs, pretrained weights, and that
each one trains under the trainer's modes (bf16 autocast, channels_last, DDP with global BatchNorm)."""
import dataclasses
import pytest
import torch

from mlcompare import backbones, losses
from mlcompare.backbones import REGISTRY, ResNetFace, build_backbone, cost
from mlcompare.config import comparison as config
from mlcompare.config.comparison import BackboneConfig, TrainConfig
from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError
from mlcompare.train.trainer import train


def named(name: str, **change) -> BackboneConfig:
    return dataclasses.replace(BackboneConfig(), name=name, **change)


def faces(size: int, identities: int = 4, per: int = 4, seed: int = 0) -> FaceData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (identities * per, 3, size, size), dtype=torch.uint8, generator=g)
    return FaceData(images, torch.arange(identities).repeat_interleave(per), [f"id{i}" for i in range(identities)], "random")


@pytest.mark.parametrize("name", list(REGISTRY))
@pytest.mark.parametrize("size", [32, 112])
def test_every_named_backbone_gives_one_embedding_per_image(name, size):
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        out = build_backbone(named(name), image_size=size, embedding_dim=24).eval()(torch.zeros(3, 3, size, size))
    assert out.shape == (3, 24)


@pytest.mark.parametrize("name", ["resnet-face", "iresnet18", "mobilefacenet"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_backbones_run_channels_last_under_autocast(name, precision):
    torch.manual_seed(0)
    model = build_backbone(named(name), image_size=32, embedding_dim=24).to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    out = backbones.embed(model, images, device=torch.device("cpu"), precision=precision)
    assert out.shape == (3, 24) and out.dtype == torch.float32 and torch.isfinite(out).all()
    if precision == "bf16":  # the same network: bf16 rounding only
        ref = backbones.embed(model, images, device=torch.device("cpu"))
        assert torch.nn.functional.cosine_similarity(out, ref).min() > 0.95


# Published sizes: arcface_torch's iResNet-50 / -100 with a 512-d embedding (43.6M / 65.2M parameters),
# MobileFaceNet 0.99M parameters and 221M multiply-adds at 112 px (Chen et al. 2018, Tables 1-2).
@pytest.mark.parametrize("name, dim, parameters", [("iresnet50", 512, 43.6e6), ("iresnet100", 512, 65.2e6),
                                                   ("mobilefacenet", 128, 0.99e6)])
def test_parameter_counts_match_the_published_ones(name, dim, parameters):
    counted = cost(named(name), image_size=112, embedding_dim=dim)["parameters"]
    assert counted == pytest.approx(parameters, rel=0.015)
    with torch.device("meta"):
        assert sum(p.numel() for p in build_backbone(named(name), image_size=112, embedding_dim=dim).parameters()) == counted


def test_mobilefacenet_flops_match_the_papers_multiply_adds():
    assert cost(named("mobilefacenet"), image_size=112, embedding_dim=128)["flops"] / 2 == pytest.approx(221e6, rel=0.01)


def test_flops_of_a_small_resnet_face_by_hand():
    """2 x multiply-adds of every convolution and the FC (BatchNorm and PReLU are not counted).
    16 px, one stage of width 8: stem 3x3 stride 2 (16 -> 8 px), a unit whose second conv and 1x1
    shortcut have stride 2 (8 -> 4 px), FC from 8 x 4 x 4 to 4."""
    stem = 2 * (8 * 8 * 8) * (3 * 3 * 3)
    conv1 = 2 * (8 * 8 * 8) * (3 * 3 * 8)
    conv2 = 2 * (4 * 4 * 8) * (3 * 3 * 8)
    shortcut = 2 * (4 * 4 * 8) * 8
    fc = 2 * (8 * 4 * 4) * 4
    got = cost(BackboneConfig(widths=[8], blocks=[1], embedding_dim=4), image_size=16)
    assert got["flops"] == stem + conv1 + conv2 + shortcut + fc
    assert got["parameters"] == sum(p.numel() for p in ResNetFace(image_size=16, widths=(8,), blocks=(1,),
                                                                  embedding_dim=4).parameters())


def test_resnet_face_is_built_as_before():
    """The default name builds today's ResNetFace from the same RNG draws (so `run quick` is unchanged)."""
    torch.manual_seed(5)
    got = build_backbone(BackboneConfig(), image_size=32)
    torch.manual_seed(5)
    want = ResNetFace(image_size=32, widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1), embedding_dim=128)
    assert type(got) is ResNetFace
    for (k, a), (j, b) in zip(got.state_dict().items(), want.state_dict().items(), strict=True):
        assert k == j and torch.equal(a, b)


def test_iresnet_keeps_arcface_torchs_module_names():
    with torch.device("meta"):
        keys = build_backbone(named("iresnet18"), image_size=112, embedding_dim=512).state_dict()
    for key in ("conv1.weight", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.downsample.0.weight",
                "layer4.1.conv2.weight", "bn2.running_mean", "fc.weight", "features.running_var"):
        assert key in keys
    assert tuple(keys["fc.weight"].shape) == (512, 512 * 7 * 7)


def test_pretrained_round_trip(tmp_path):
    torch.manual_seed(1)
    source = build_backbone(named("mobilefacenet"), image_size=16, embedding_dim=16).eval()
    with torch.no_grad():  # non-default statistics, so that a load that skipped buffers would show
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(2)  # another initialisation: only the file can make the outputs equal
    loaded = build_backbone(named("mobilefacenet", pretrained=str(path)), image_size=16, embedding_dim=16).eval()
    assert torch.equal(loaded(x), source(x))
    torch.save({"model": source.state_dict(), "step": 3}, tmp_path / "checkpoint.pt")  # a run's checkpoint
    again = build_backbone(named("mobilefacenet", pretrained=str(tmp_path / "checkpoint.pt")), image_size=16,
                           embedding_dim=16).eval()
    assert torch.equal(again(x), source(x))


def test_pretrained_shape_mismatch_is_one_line_naming_the_keys(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(build_backbone(named("mobilefacenet"), image_size=32, embedding_dim=16).state_dict(), path)
    with pytest.raises(UserError) as err:
        build_backbone(named("mobilefacenet", pretrained=str(path)), image_size=32, embedding_dim=8)
    text = str(err.value)
    assert "\n" not in text and "head.2.weight: file (16, 512, 1, 1) vs backbone (8, 512, 1, 1)" in text
    with pytest.raises(UserError, match="does not fit"):  # a whole other backbone: keys missing and extra
        cost(named("iresnet18", pretrained=str(path)), image_size=32)
    with pytest.raises(UserError, match="is not a file"):
        build_backbone(named("iresnet18", pretrained=str(tmp_path / "absent.pt")), image_size=32)


def test_names_are_checked_with_the_config(tmp_path):
    with pytest.raises(UserError, match=r"unknown backbone 'iresnet51'; valid: resnet-face, iresnet18"):
        config.load("quick", sets=["backbone.name=iresnet51"])
    assert config.load("quick", sets=["backbone.name=timm:resnet18"]).backbone.name == "timm:resnet18"
    path = tmp_path / "c.toml"
    path.write_text('extends = "quick"\n[backbone]\nname = "timm:resnet18"\npretrained = true\n')
    with pytest.raises(UserError, match="nothing is downloaded at run time: give a local state-dict file") as err:
        config.load(str(path))
    assert "\n" not in str(err.value)


def _timm_importable() -> str:
    try:
        import timm  # noqa: F401
    except ImportError as err:
        return str(err)
    return ""


@pytest.mark.skipif(bool(_timm_importable()), reason=f"timm cannot be imported here ({_timm_importable()}): "
                    "timm needs torchvision, and PyPI's torchvision does not import beside this torch")
def test_a_timm_model_gets_our_embedding_head():
    model = build_backbone(named("timm:resnet18"), image_size=32, embedding_dim=24).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 24)
    assert isinstance(model.head[-1], torch.nn.BatchNorm1d)


@pytest.mark.skipif(not _timm_importable(), reason="timm imports here: the missing-extra message cannot be shown")
def test_timm_missing_is_one_line_naming_the_extra():
    with pytest.raises(UserError, match=r"needs timm .*pip install mlcompare\[timm\]"):
        build_backbone(named("timm:resnet18"), image_size=32)


class _FakeTimm:
    """timm's contract that TimmBackbone relies on, where timm cannot be imported: create_model(NAME,
    pretrained=False, num_classes=0) returns a pooled trunk with num_features; an unknown NAME raises
    RuntimeError("Unknown model (NAME)")."""

    calls: list = []

    @classmethod
    def create_model(cls, name, pretrained=True, num_classes=1000):
        cls.calls.append((name, pretrained, num_classes))
        if name != "tiny_cnn":
            raise RuntimeError(f"Unknown model ({name})")
        trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        trunk.num_features = 6
        return trunk


def test_timm_wiring_with_timms_contract(monkeypatch):
    """Our side of `timm:NAME` (no download asked for, classifier removed, our head on num_features,
    timm's unknown-model error as one line), run against timm's documented contract."""
    import sys

    monkeypatch.setitem(sys.modules, "timm", _FakeTimm)
    _FakeTimm.calls.clear()
    model = build_backbone(named("timm:tiny_cnn"), image_size=16, embedding_dim=24).eval()
    assert _FakeTimm.calls == [("tiny_cnn", False, 0)]
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 24)
    assert model.head[0].num_features == 6 and isinstance(model.head[-1], torch.nn.BatchNorm1d)
    with pytest.raises(UserError, match=r"backbone 'timm:nope': Unknown model \(nope\); list timm's models"):
        build_backbone(named("timm:nope"), image_size=16)


def test_a_torchvision_built_for_another_torch_is_one_line(monkeypatch):
    """What `pip install timm` beside a CPU torch gives: PyPI's CUDA torchvision, whose import fails."""
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "timm":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(UserError, match=r"torchvision, which it imports, does not load beside torch .*"
                                        r"operator torchvision::nms does not exist.*download.pytorch.org/whl/cpu"):
        build_backbone(named("timm:resnet18"), image_size=32)


def _step(name: str, size: int, cfg: TrainConfig, data: FaceData) -> dict:
    torch.manual_seed(0)
    model = build_backbone(named(name), image_size=size, embedding_dim=16)
    loss = losses.get("arcface", num_classes=data.num_identities, embedding_dim=16)
    result = train(model, loss, data, cfg, seed=0, device=torch.device("cpu"))
    return {"loss": result.history[-1]["loss"], "model": {k: v.clone() for k, v in model.state_dict().items()}}


def test_iresnet_trains_a_step_at_112_px():
    cfg = dataclasses.replace(TrainConfig(), steps=1, p=2, k=2, warmup_steps=1, log_every=1)
    torch.manual_seed(0)
    before = build_backbone(named("iresnet18"), image_size=112, embedding_dim=16).state_dict()
    out = _step("iresnet18", 112, cfg, faces(112, identities=2, per=2))
    assert torch.isfinite(torch.tensor(out["loss"]))
    assert not torch.equal(out["model"]["fc.weight"], before["fc.weight"])
    assert torch.equal(out["model"]["features.weight"], before["features.weight"])  # frozen at 1, as in arcface_torch


def test_mobilefacenet_trains_a_step_in_bf16():
    cfg = dataclasses.replace(TrainConfig(), steps=1, p=2, k=2, warmup_steps=1, log_every=1, precision="bf16")
    assert torch.isfinite(torch.tensor(_step("mobilefacenet", 16, cfg, faces(16, identities=2, per=2))["loss"]))


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_backbones_trace_into_one_graph_for_compile(name):
    """torch.compile's tracer takes the whole forward pass (fullgraph: a graph break would raise)."""
    torch.manual_seed(0)
    model = build_backbone(named(name), image_size=16, embedding_dim=8).eval()
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_batchnorm_becomes_global_under_ddp(name):
    """What the trainer does under torchrun (BatchNorm2d and the embedding's BatchNorm1d alike)."""
    from mlcompare.train.sync_batchnorm import GlobalBatchNorm, synchronise_batchnorm

    with torch.device("meta"):
        model = build_backbone(named(name), image_size=32, embedding_dim=8)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    synchronise_batchnorm(model, torch.device("cpu"))
    converted = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(converted) == len(norms) > 0 and all(isinstance(m, GlobalBatchNorm) for m in converted)
    assert {k for k, p in model.named_parameters() if not p.requires_grad} == frozen
