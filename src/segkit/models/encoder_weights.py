"""Pretrained ResNet encoder weights from a local file (torchvision's key layout).

Nothing is downloaded: the user passes a ``.safetensors`` file (or a ``.pth``/``.pt``
read with ``torch.load(weights_only=True)``) holding an ImageNet ResNet-18/34 state
dict as torchvision names it (``conv1.weight``, ``bn1.running_mean``,
``layer1.0.conv1.weight`` …, ``fc.weight``). ``docs/models.md`` shows how to fetch
torchvision's files once and convert them.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segkit._io import sha256_file
from segkit.errors import EncoderWeightsError
from segkit.models.resunet import ResNetEncoder

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".bin")
FIRST_CONV = "conv1.weight"
#: The ImageNet classifier: in the file, never part of a segmentation encoder.
CLASSIFIER_PREFIX = "fc."
#: BatchNorm's step counter; torchvision's 2017 ResNet files predate it.
_OPTIONAL_SUFFIX = "num_batches_tracked"
_SHOWN = 5
#: The input normalisation torchvision's ImageNet weights were trained with (RGB, [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderWeightsReport:
    """What :func:`load_encoder_weights` loaded; ``to_dict()`` goes into the run config.

    ``first_conv`` says how the file's 3-channel stem met the model's input channels:
    ``"as is"``, ``"summed"`` (1 channel: the RGB filters added up, so a grey image
    ``g`` gives the response the RGB image ``(g, g, g)`` gave) or ``"repeated"`` (2 or
    ≥ 4 channels: input channel ``i`` takes RGB filter ``i mod 3``, all scaled by
    ``3 / channels`` so the response keeps its size).
    """

    path: str
    sha256: str
    loaded: int
    missing: list[str]
    unexpected: list[str]
    skipped: list[str]
    first_conv: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


#: Terminal colour codes, which torch puts in some of its messages.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _unpickling_problem(error: pickle.UnpicklingError) -> str:
    """Why ``torch.load(weights_only=True)`` refused a pickle, in one line."""
    found = _UNSAFE_GLOBAL.search(str(error))
    if found is None:
        detail = " ".join(_ANSI.sub("", str(error)).split())[:200]
        return f"cannot read weights (not a readable weights pickle: {detail})"
    return (
        f"refused: the pickle would load {found.group(1)}, which plain weights never need "
        "(unpickling it could run code); save the state dict as .safetensors and use that"
    )


def read_state_dict(path: Path | str) -> dict[str, Tensor]:
    """Read a flat ``name → tensor`` state dict from ``.safetensors`` or ``.pth``/``.pt``/``.bin``.

    Pickle files are read with ``torch.load(weights_only=True)``, which refuses
    anything but tensors and plain containers. Raises ``EncoderWeightsError``.
    """
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"{path}: encoder weights file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in SAFETENSORS_SUFFIXES:
            import safetensors.torch

            state: Any = safetensors.torch.load_file(str(path), device="cpu")
        elif suffix in PICKLE_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise EncoderWeightsError(
                f"{path}: unknown weights format {suffix or '(no suffix)'!r}; "
                f"use {', '.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)}"
            )
    except EncoderWeightsError:
        raise
    except pickle.UnpicklingError as error:
        raise EncoderWeightsError(f"{path}: {_unpickling_problem(error)}") from error
    except Exception as error:  # safetensors and unpickling raise many types
        detail = " ".join(_ANSI.sub("", str(error)).split())[:200]
        raise EncoderWeightsError(f"{path}: cannot read weights ({detail})") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise EncoderWeightsError(
            f"{path}: not a flat state dict of named tensors "
            f"(found {type(state).__name__}{_key_hint(state)})"
        )
    return dict(state)


def adapt_first_conv(weight: Tensor, in_channels: int) -> tuple[Tensor, str]:
    """Fit a ``[out, 3, k, k]`` stem filter to ``in_channels`` inputs (see the report).

    >>> w = torch.ones(2, 3, 1, 1)
    >>> [(tuple(a.shape), how) for a, how in (adapt_first_conv(w, n) for n in (3, 1, 4))]
    [((2, 3, 1, 1), 'as is'), ((2, 1, 1, 1), 'summed'), ((2, 4, 1, 1), 'repeated')]
    """
    channels = weight.shape[1]
    if channels == in_channels:
        return weight, "as is"
    if channels != 3:
        raise ValueError(
            f"first conv has {channels} input channels; only 3-channel (RGB) weights adapt"
        )
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True), "summed"
    repeated = weight[:, [index % 3 for index in range(in_channels)]]
    return repeated * (3.0 / in_channels), "repeated"


def load_encoder_weights(
    model: nn.Module, path: Path | str, *, strict: bool = True
) -> EncoderWeightsReport:
    """Copy an ImageNet ResNet state dict (torchvision layout) into ``model.encoder``.

    The classifier (``fc.*``) is skipped; the stem is adapted to the model's input
    channels. Tensor shapes must fit (a ResNet-50's Bottleneck weights do not fit a
    BasicBlock encoder). With ``strict`` (the default) encoder tensors the file lacks,
    and file tensors that fit nothing, are errors too; otherwise they are only listed
    in the returned report. Raises ``EncoderWeightsError``; the model is unchanged then.
    """
    path = Path(path)
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, ResNetEncoder):
        raise EncoderWeightsError(
            f"{path}: {type(model).__name__} has no ResNet encoder to load weights into"
        )
    state = read_state_dict(path)
    target = encoder.state_dict()
    skipped = sorted(k for k in state if k.startswith(CLASSIFIER_PREFIX))
    unexpected = sorted(k for k in state if k not in target and k not in skipped)
    missing = sorted(k for k in target if k not in state and not k.endswith(_OPTIONAL_SUFFIX))
    matched = {k: v for k, v in state.items() if k in target}
    if not any(not k.endswith(_OPTIONAL_SUFFIX) for k in matched):
        raise EncoderWeightsError(
            f"{path}: no tensor has a ResNet key in torchvision's layout "
            f"(conv1.weight, layer1.0.conv1.weight, …){_key_hint(state)}"
        )
    first_conv = "as is"
    if FIRST_CONV in matched:
        try:
            matched[FIRST_CONV], first_conv = adapt_first_conv(
                matched[FIRST_CONV], encoder.in_channels
            )
        except ValueError as error:
            raise EncoderWeightsError(f"{path}: {FIRST_CONV}: {error}") from None
    # In the model's order, so the first one named is the shallowest.
    wrong = [k for k in target if k in matched and matched[k].shape != target[k].shape]
    if wrong:
        key = wrong[0]
        raise EncoderWeightsError(
            f"{path}: {len(wrong)} tensor(s) do not fit a ResNet with blocks "
            f"{list(encoder.blocks)}, e.g. {key}: {list(matched[key].shape)} in the file, "
            f"{list(target[key].shape)} in the model (only BasicBlock ResNet-18/34 weights fit)"
        )
    if strict and (missing or unexpected):
        raise EncoderWeightsError(
            f"{path}: does not match a ResNet with blocks {list(encoder.blocks)}: "
            f"{len(missing)} encoder tensor(s) missing{_names(missing)}, "
            f"{len(unexpected)} unexpected{_names(unexpected)} "
            "(a ResNet-18 file for a ResNet-34 model, or the reverse?)"
        )
    encoder.load_state_dict(matched, strict=False)
    return EncoderWeightsReport(
        path=str(path),
        sha256=sha256_file(path),
        loaded=len(matched),
        missing=missing,
        unexpected=unexpected,
        skipped=skipped,
        first_conv=first_conv,
    )


def _names(keys: list[str]) -> str:
    if not keys:
        return ""
    more = f", … {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return f" ({', '.join(keys[:_SHOWN])}{more})"


def _key_hint(state: object) -> str:
    if not isinstance(state, Mapping) or not state:
        return ""
    keys = sorted(str(k) for k in state if not str(k).endswith(_OPTIONAL_SUFFIX))
    return f"; its {len(state)} keys include: " + ", ".join(keys[:_SHOWN])
