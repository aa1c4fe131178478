"""Model checkpoints: tensors in safetensors, everything else in a JSON sidecar.

``runs/NAME/checkpoints/best.safetensors`` holds the state dict only; ``best.json``
beside it says how to rebuild the model (registry name, constructor overrides, channel
counts), the class names, the input normalisation and the epoch. Nothing is ever
unpickled, and both files are written atomically (tensors first, so a sidecar always
describes complete tensors; it also records their SHA-256 to catch a mismatched pair).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from segkit import __version__
from segkit._io import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
from segkit._text import short_list
from segkit.errors import CheckpointError, SegkitError
from segkit.models.registry import ModelConfig, build_model_from_config

FORMAT = "segkit-checkpoint"
SCHEMA_VERSION = 1
TENSOR_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class CheckpointMeta:
    """The JSON sidecar of a checkpoint."""

    model: ModelConfig
    classes: list[str]
    normalization: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    segkit_version: str = __version__
    tensors_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the sidecar."""
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "segkit_version": self.segkit_version,
            **self.model.to_dict(),
            "classes": list(self.classes),
            "normalization": dict(self.normalization),
            "epoch": self.epoch,
            "tensors_sha256": self.tensors_sha256,
            "extra": dict(self.extra),
        }


def checkpoint_paths(path: Path | str) -> tuple[Path, Path]:
    """``(tensors, sidecar)`` for ``best``, ``best.safetensors`` or ``best.json``."""
    path = Path(path)
    if path.suffix in (TENSOR_SUFFIX, ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + TENSOR_SUFFIX), path.with_name(path.name + ".json")


def _check_classes(classes: Sequence[str], num_classes: int) -> None:
    # A single-logit (sigmoid) head still names two classes: background and foreground.
    expected = 2 if num_classes == 1 else num_classes
    if len(classes) != expected:
        raise CheckpointError(
            f"{len(classes)} class names given for a model with {num_classes} output(s); "
            f"expected {expected}"
        )


def save_checkpoint(
    path: Path | str,
    model: nn.Module,
    *,
    classes: Sequence[str],
    config: ModelConfig | None = None,
    normalization: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Save ``model``'s state dict and its sidecar; returns ``(tensors, sidecar)`` paths.

    ``config`` defaults to the :class:`ModelConfig` that ``build_model`` attached to the
    model. ``normalization`` is free-form JSON (e.g. ``{"mean": [...], "std": [...]}``),
    ``extra`` holds anything else JSON-serialisable (metrics, train config).
    """
    config = config if config is not None else getattr(model, "segkit_config", None)
    if not isinstance(config, ModelConfig):
        raise CheckpointError(
            "model was not built by segkit.models.build_model; pass config=ModelConfig(...)"
        )
    _check_classes(classes, config.num_classes)
    tensors_path, sidecar_path = checkpoint_paths(path)
    # safetensors needs contiguous, unshared tensors; channels_last weights are not.
    state = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }
    data = safetensors.torch.save(state, metadata={"format": FORMAT})
    meta = CheckpointMeta(
        model=config,
        classes=[str(name) for name in classes],
        normalization=dict(normalization or {}),
        epoch=epoch,
        extra=dict(extra or {}),
        tensors_sha256=sha256_bytes(data),
    )
    try:
        sidecar = meta.to_dict()
        json.dumps(sidecar, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{sidecar_path}: metadata is not JSON-serialisable: {error}"
        ) from error
    atomic_write_bytes(tensors_path, data)
    atomic_write_json(sidecar_path, sidecar)
    return tensors_path, sidecar_path


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    value = data.get(key)
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise CheckpointError(f"{where}: key {key!r} missing or of the wrong type")
    return value


def _optional_object(data: Mapping[str, Any], key: str, where: Path) -> dict[str, Any]:
    """``data[key]`` as a dict: an absent or null key is an empty one."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: key {key!r} must be an object, got {type(value).__name__}")
    return dict(value)


def _optional_hash(data: Mapping[str, Any], where: Path) -> str | None:
    value = data.get("tensors_sha256")
    if value is not None and not isinstance(value, str):
        raise CheckpointError(f"{where}: key 'tensors_sha256' must be a hex string or null")
    return value


def read_checkpoint_meta(path: Path | str) -> CheckpointMeta:
    """Read and validate the sidecar of the checkpoint at ``path``."""
    _, sidecar_path = checkpoint_paths(path)
    if not sidecar_path.is_file():
        raise CheckpointError(f"{sidecar_path}: checkpoint metadata not found")
    try:
        data = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{sidecar_path}: not valid JSON ({error})") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar_path}: not a segkit checkpoint sidecar")
    version = _require(data, "schema_version", int, sidecar_path)
    if version > SCHEMA_VERSION:
        raise CheckpointError(
            f"{sidecar_path}: schema_version {version} is newer than this segkit understands "
            f"({SCHEMA_VERSION}); upgrade segkit"
        )
    classes = _require(data, "classes", list, sidecar_path)
    model = ModelConfig(
        name=_require(data, "architecture", str, sidecar_path),
        in_channels=_require(data, "in_channels", int, sidecar_path),
        num_classes=_require(data, "num_classes", int, sidecar_path),
        overrides=_optional_object(data, "model_kwargs", sidecar_path),
    )
    epoch = data.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise CheckpointError(f"{sidecar_path}: epoch must be an integer or null")
    try:
        _check_classes(classes, model.num_classes)
    except CheckpointError as error:
        raise CheckpointError(f"{sidecar_path}: {error}") from None
    return CheckpointMeta(
        model=model,
        classes=[str(name) for name in classes],
        normalization=_optional_object(data, "normalization", sidecar_path),
        epoch=epoch,
        extra=_optional_object(data, "extra", sidecar_path),
        segkit_version=str(data.get("segkit_version", "unknown")),
        tensors_sha256=_optional_hash(data, sidecar_path),
    )


def _rebuild(tensors_path: Path, config: ModelConfig) -> nn.Module:
    """The model ``config`` describes; a sidecar no model fits is a ``CheckpointError``."""
    try:
        return build_model_from_config(config)
    except SegkitError as error:
        raise CheckpointError(f"{tensors_path}: cannot rebuild the model: {error}") from error
    except (RuntimeError, OverflowError, MemoryError) as error:  # absurd sizes
        detail = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{tensors_path}: cannot rebuild the model: {detail}") from None


def _check_shapes(tensors_path: Path, config: ModelConfig) -> None:
    """Compare the tensor names and shapes the sidecar's model needs with the file's header.

    The model is built on the ``meta`` device (no memory), so a sidecar from a stranger
    that describes a huge model fails here instead of allocating it.
    """
    with torch.device("meta"):
        skeleton = _rebuild(tensors_path, config)
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    try:
        with safetensors.safe_open(str(tensors_path), framework="pt") as handle:
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own SafetensorError types
        raise CheckpointError(
            f"{tensors_path}: not a readable safetensors file ({error})"
        ) from error
    if found == expected:
        return
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{name} {list(found[name])} != {list(expected[name])}"
        for name in sorted(set(found) & set(expected))
        if found[name] != expected[name]
    ]
    parts = [
        f"{label}: {short_list(items, 3)}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if items
    ]
    raise CheckpointError(f"{tensors_path}: weights do not fit {config.name!r}: {'; '.join(parts)}")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A rebuilt model (eval mode, on the requested device) and its metadata."""

    model: nn.Module
    meta: CheckpointMeta


def load_checkpoint(
    path: Path | str, *, device: torch.device | str = "cpu", verify_hash: bool = True
) -> LoadedCheckpoint:
    """Rebuild the model described by the sidecar and load the safetensors weights.

    Raises ``CheckpointError`` when a file is missing, the hash recorded in the sidecar
    does not match the tensors, or the tensors do not fit the architecture.
    """
    tensors_path, _ = checkpoint_paths(path)
    meta = read_checkpoint_meta(path)
    if not tensors_path.is_file():
        raise CheckpointError(f"{tensors_path}: checkpoint tensors not found")
    if verify_hash and meta.tensors_sha256 and sha256_file(tensors_path) != meta.tensors_sha256:
        raise CheckpointError(
            f"{tensors_path}: does not match its sidecar (SHA-256 differs); "
            "the pair was mixed up or one file was replaced"
        )
    _check_shapes(tensors_path, meta.model)
    model = _rebuild(tensors_path, meta.model)
    try:
        state = safetensors.torch.load_file(str(tensors_path), device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError types
        raise CheckpointError(
            f"{tensors_path}: not a readable safetensors file ({error})"
        ) from error
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise CheckpointError(
            f"{tensors_path}: weights do not fit {meta.model.name!r}: {detail[:300]}"
        ) from error
    model.to(device).eval()
    return LoadedCheckpoint(model=model, meta=meta)
