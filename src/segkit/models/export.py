"""ONNX export of a model, and a check of the exported graph with onnxruntime."""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segkit._io import atomic_write_bytes
from segkit.errors import OptionError

DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def onnx_bytes(
    model: nn.Module,
    example: torch.Tensor,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, Any] | None = None,
) -> bytes:
    """Serialise ``model`` (run in eval mode on ``example``) to ONNX with dynamic N, H, W.

    Uses PyTorch's TorchScript-based exporter, which needs the ``onnx`` package (the
    ``segkit[onnx]`` extra) but not ``onnxscript``; ``metadata`` is stored as JSON under
    the ``segkit`` key of the model's ``metadata_props``. Raises ``OptionError`` when
    ``onnx`` is missing.
    """
    if not onnx_installed():
        raise OptionError("ONNX export needs the onnx package: pip install 'segkit[onnx]'")
    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    try:
        with warnings.catch_warnings():
            # The legacy exporter announces its deprecation; tracing warns on int() of sizes.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=opset,
            )
    finally:
        model.train(was_training)
    data = buffer.getvalue()
    if metadata:
        data = _with_metadata(data, metadata)
    return data


def onnx_installed() -> bool:
    """Whether the ``onnx`` package, which the exporter needs, can be imported."""
    return importlib.util.find_spec("onnx") is not None


def _with_metadata(data: bytes, metadata: Mapping[str, Any]) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    entry = proto.metadata_props.add()
    entry.key = "segkit"
    entry.value = json.dumps(dict(metadata), ensure_ascii=False)
    return proto.SerializeToString()


def export_onnx(
    model: nn.Module,
    path: Path,
    *,
    input_size: int,
    in_channels: int,
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as ONNX to ``path`` atomically, traced on a 1×C×S×S input."""
    device = next(model.parameters()).device
    example = torch.randn(1, in_channels, input_size, input_size, device=device)
    atomic_write_bytes(Path(path), onnx_bytes(model, example, opset=opset, metadata=metadata))
    return Path(path)


@dataclass(frozen=True)
class OnnxCheck:
    """Largest |ONNX − PyTorch| difference on one input shape."""

    shape: tuple[int, ...]
    max_abs_diff: float
    max_abs_value: float
    ok: bool


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_onnx(
    path: Path,
    model: nn.Module,
    shapes: list[tuple[int, ...]],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
) -> list[OnnxCheck]:
    """Run the ONNX file with onnxruntime (CPU) and compare it to ``model`` per shape.

    ``ok`` is ``|onnx − torch| <= atol + rtol·|torch|`` everywhere, as ``np.allclose``.
    Raises ``OptionError`` when onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise OptionError("checking needs onnxruntime: pip install 'segkit[onnx]'") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    results = []
    try:
        for shape in shapes:
            x = torch.randn(shape, generator=generator)
            with torch.inference_mode():
                expected = model(x.to(device)).float().cpu().numpy()
            (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
            if actual.shape != expected.shape:
                results.append(OnnxCheck(tuple(shape), float("inf"), 0.0, False))
                continue
            diff = np.abs(actual - expected)
            results.append(
                OnnxCheck(
                    shape=tuple(shape),
                    max_abs_diff=float(diff.max()),
                    max_abs_value=float(np.abs(expected).max()),
                    ok=bool(np.all(diff <= atol + rtol * np.abs(expected))),
                )
            )
    finally:
        model.train(was_training)
    return results
