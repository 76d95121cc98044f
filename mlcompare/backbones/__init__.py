"""Backbones by name (``[backbone] name``), and how every one of them is run.

:data:`REGISTRY` maps a name to its builder; ``timm:NAME`` builds any timm model. Every backbone
takes ``[B, 3, H, W]`` in [-1, 1] (:func:`to_input`) and returns ``[B, embedding_dim]``, not
normalised: normalisation belongs to the loss and the evaluation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mlcompare.backbones.iresnet import IResNet, LAYOUTS
from mlcompare.backbones.mobilefacenet import MobileFaceNet
from mlcompare.backbones.pretrained import read_pretrained
from mlcompare.backbones.resnet_face import BasicBlock, ResNetFace
from mlcompare.backbones.running import PRECISIONS, autocast, embed, to_input
from mlcompare.backbones.timm_backbone import TimmBackbone
from mlcompare.backbones.timm_backbone import PREFIX as TIMM_PREFIX
from mlcompare.errors import UserError


class BackboneSpec(Protocol):
    """What a backbone is built from: the fields of a comparison's ``[backbone]`` section
    (:class:`mlcompare.config.comparison.BackboneConfig`), declared here so that the backbones do not
    import the config that checks their names."""

    name: str
    widths: Sequence[int]
    blocks: Sequence[int]
    dropout: float
    embedding_dim: int
    pretrained: str

__all__ = ["REGISTRY", "BasicBlock", "IResNet", "MobileFaceNet", "PRECISIONS", "ResNetFace", "TimmBackbone",
           "autocast", "build_backbone", "check_name", "cost", "cost_text", "count_text", "embed", "to_input"]

Builder = Callable[..., nn.Module]  # (config, *, image_size, embedding_dim) -> the backbone


def _resnet_face(config: BackboneSpec, *, image_size: int, embedding_dim: int) -> nn.Module:
    return ResNetFace(image_size=image_size, widths=tuple(config.widths), blocks=tuple(config.blocks),
                      embedding_dim=embedding_dim, dropout=config.dropout)


def _iresnet(layers: tuple[int, ...]) -> Builder:
    def build(config: BackboneSpec, *, image_size: int, embedding_dim: int) -> nn.Module:
        return IResNet(layers=layers, image_size=image_size, embedding_dim=embedding_dim, dropout=config.dropout)
    return build


def _mobilefacenet(config: BackboneSpec, *, image_size: int, embedding_dim: int) -> nn.Module:
    return MobileFaceNet(image_size=image_size, embedding_dim=embedding_dim, dropout=config.dropout)


# The named backbones; ``timm:NAME`` is handled by build_backbone (any of timm's models).
REGISTRY: dict[str, Builder] = {"resnet-face": _resnet_face} | {name: _iresnet(layers) for name, layers in LAYOUTS.items()} \
    | {"mobilefacenet": _mobilefacenet}


def check_name(name: str) -> None:
    """A one-line :class:`UserError` unless ``name`` is in :data:`REGISTRY` or ``timm:NAME``."""
    if name not in REGISTRY and not (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)):
        raise UserError(f"backbone.name: unknown backbone '{name}'; valid: {', '.join(REGISTRY)} or {TIMM_PREFIX}NAME "
                        "(any timm model, pip install mlcompare[timm])")


def _build(config: BackboneSpec, *, image_size: int, embedding_dim: int) -> nn.Module:
    check_name(config.name)
    if config.name.startswith(TIMM_PREFIX):
        return TimmBackbone(model_name=config.name.removeprefix(TIMM_PREFIX), image_size=image_size,
                            embedding_dim=embedding_dim, dropout=config.dropout)
    return REGISTRY[config.name](config, image_size=image_size, embedding_dim=embedding_dim)


def build_backbone(config: BackboneSpec, *, image_size: int, embedding_dim: int | None = None) -> nn.Module:
    """The backbone a comparison's ``[backbone]`` section describes (``embedding_dim``: a method's own
    size, default the section's), with the weights of ``config.pretrained`` when it names a file;
    used alike by training (``mlcompare run``) and scoring (``mlcompare eval``)."""
    model = _build(config, image_size=image_size, embedding_dim=embedding_dim or config.embedding_dim)
    if config.pretrained:
        model.load_state_dict(read_pretrained(config.pretrained, model))
    return model


def cost(config: BackboneSpec, *, image_size: int, embedding_dim: int | None = None) -> dict[str, Any]:
    """Parameters and forward FLOPs (multiply-adds count 2, per image, at ``image_size``) of the backbone,
    counted on the meta device (no memory, no RNG draws, no arithmetic); checks ``config.pretrained``
    fits it. Keys: name, image_size, embedding_dim, parameters, flops.

    A timm model is counted on the CPU: many compute their layout at construction with ``.item()``,
    which meta tensors cannot answer (its random initialisation draws from the global RNG)."""
    dim = embedding_dim or config.embedding_dim
    with torch.device("cpu" if config.name.startswith(TIMM_PREFIX) else "meta"), torch.no_grad():
        model = _build(config, image_size=image_size, embedding_dim=dim).eval()
        if config.pretrained:
            read_pretrained(config.pretrained, model)
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.zeros(1, 3, image_size, image_size))
    return {"name": config.name, "image_size": image_size, "embedding_dim": dim,
            "parameters": sum(p.numel() for p in model.parameters()), "flops": counter.get_total_flops()}


def count_text(n: float) -> str:
    """``43590848`` -> ``43.6M``, ``9416`` -> ``9.42k``: three significant digits and a unit prefix."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.3g}{prefix}"
    return f"{n:.3g}"


def cost_text(c: dict[str, Any]) -> str:
    """``cost``'s dict as one phrase: ``iresnet50: 43.6M parameters, 12.6G FLOPs per 112 px image (512-d)``."""
    return (f"{c['name']}: {count_text(c['parameters'])} parameters, {count_text(c['flops'])} FLOPs per "
            f"{c['image_size']} px image ({c['embedding_dim']}-d)")
