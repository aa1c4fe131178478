"""Models by name: what train and predict build, and what ``segkit models`` lists.

A new model joins by adding one ``ModelSpec`` line to ``_SPECS``; the contract test
(``tests/test_model_contract.py``) then checks it. Costs (FLOPs, latency) are in
``segkit.models.profile``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from segkit.errors import OptionError
from segkit.models.encoder_weights import load_encoder_weights
from segkit.models.resunet import RESNET18_BLOCKS, RESNET34_BLOCKS, ResUNet
from segkit.models.unet import UNet
from segkit.models.unet3p import UNet3Plus
from segkit.models.unetpp import UNetPlusPlus


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: a model class plus the keyword defaults that make this size."""

    name: str
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    description: str

    def options(self) -> list[str]:
        """Keyword arguments an override may set (everything but the channel counts)."""
        params = inspect.signature(self.builder).parameters
        return [p for p in params if p not in ("in_channels", "num_classes")]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model: registry name, channel counts, overrides."""

    name: str
    in_channels: int
    num_classes: int
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the form checkpoints store)."""
        return {
            "architecture": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "model_kwargs": dict(self.overrides),
        }


_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "unet",
            UNet,
            {"base_channels": 64, "depth": 4},
            "paper U-Net (width 64, depth 4) + BatchNorm, same padding",
        ),
        ModelSpec(
            "unet-small",
            UNet,
            {"base_channels": 32, "depth": 4},
            "U-Net width 32: ¼ of the parameters, for CPU training",
        ),
        ModelSpec(
            "unet-tiny",
            UNet,
            {"base_channels": 16, "depth": 4},
            "U-Net width 16: CPU training in minutes",
        ),
        ModelSpec(
            "unet-valid",
            UNet,
            {"base_channels": 64, "depth": 4, "padding": "valid", "batch_norm": False},
            "paper-exact U-Net: valid padding (572→388), no BatchNorm",
        ),
        ModelSpec(
            "unetpp",
            UNetPlusPlus,
            {"base_channels": 32, "depth": 4, "deep_supervision": True},
            "paper UNet++ (width 32), deep supervision, prunable",
        ),
        ModelSpec(
            "unetpp-small",
            UNetPlusPlus,
            {"base_channels": 16, "depth": 4, "deep_supervision": True},
            "UNet++ width 16, deep supervision, prunable",
        ),
        ModelSpec(
            "unet3p",
            UNet3Plus,
            {"base_channels": 64, "cat_channels": 64},
            "paper UNet 3+: full-scale skips, 320-channel decoder, deep supervision",
        ),
        ModelSpec(
            "unet3p-small",
            UNet3Plus,
            {"base_channels": 16, "cat_channels": 16},
            "UNet 3+ width 16 (80-channel decoder), deep supervision, for CPUs",
        ),
        ModelSpec(
            "unet-r18",
            ResUNet,
            {"blocks": RESNET18_BLOCKS},
            "U-Net on a ResNet-18 encoder (7×7/2 stem), takes ImageNet encoder weights",
        ),
        ModelSpec(
            "unet-r34",
            ResUNet,
            {"blocks": RESNET34_BLOCKS},
            "U-Net on a ResNet-34 encoder (SMP's default Unet), takes ImageNet encoder weights",
        ),
    )
}


def list_models() -> list[str]:
    """Registry names in display order."""
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    """The registry entry ``name``; ``OptionError`` listing the known names otherwise."""
    try:
        return _SPECS[name]
    except KeyError:
        raise OptionError(f"unknown model {name!r}; choose one of: {', '.join(_SPECS)}") from None


def build_model(
    name: str,
    in_channels: int = 3,
    num_classes: int = 2,
    *,
    encoder_weights: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build registry model ``name`` for ``in_channels`` inputs and ``num_classes`` logits.

    ``overrides`` replace the entry's defaults (e.g. ``base_channels=8``). Unknown
    names, unknown overrides and invalid values raise ``OptionError``. The returned
    module carries its :class:`ModelConfig` as ``model.segkit_config`` so a checkpoint
    can record how to rebuild it.

    ``encoder_weights`` (ResNet-encoder models only) loads an ImageNet state dict from
    that local file with :func:`~segkit.models.encoder_weights.load_encoder_weights`;
    what it loaded (keys, stem adaptation, SHA-256) is ``model.segkit_encoder_weights``.
    The path is not part of ``segkit_config``: a checkpoint holds the trained weights.

    >>> import torch
    >>> build_model("unet-tiny", 1, 3, base_channels=4)(torch.zeros(1, 1, 37, 101)).shape
    torch.Size([1, 3, 37, 101])
    """
    spec = get_spec(name)
    if encoder_weights is not None and spec.builder is not ResUNet:
        fitting = [n for n, s in _SPECS.items() if s.builder is ResUNet]
        raise OptionError(
            f"model {name!r} has no pretrained encoder; encoder weights fit: {', '.join(fitting)}"
        )
    unknown = sorted(set(overrides) - set(spec.options()))
    if unknown:
        raise OptionError(
            f"model {name!r} has no option {', '.join(unknown)}; "
            f"options: {', '.join(spec.options())}"
        )
    try:
        model = spec.builder(in_channels, num_classes, **{**spec.defaults, **overrides})
    except (TypeError, ValueError) as error:
        raise OptionError(f"model {name!r}: {error}") from error
    model.segkit_config = ModelConfig(name, in_channels, num_classes, dict(overrides))
    if encoder_weights is not None:
        model.segkit_encoder_weights = load_encoder_weights(model, encoder_weights)
    return model


def build_model_from_config(config: ModelConfig | Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from a :class:`ModelConfig` or its ``to_dict()`` form."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig(
            config["architecture"],
            config["in_channels"],
            config["num_classes"],
            dict(config.get("model_kwargs") or {}),
        )
    return build_model(config.name, config.in_channels, config.num_classes, **config.overrides)
