"""TorchScript helpers shared by the model tests."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn


def script(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` without its deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model)


def assert_script_round_trip(model: nn.Module, x: torch.Tensor) -> torch.jit.ScriptModule:
    """Scripted ``model`` equals eager on ``x``, also after a save and load; returns it."""
    scripted = script(model)
    with torch.inference_mode():
        expected = model(x)
        torch.testing.assert_close(scripted(x), expected)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(scripted, buffer)
            buffer.seek(0)
            loaded = torch.jit.load(buffer)
        torch.testing.assert_close(loaded(x), expected)
    return scripted
