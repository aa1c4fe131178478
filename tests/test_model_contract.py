"""The contract every registered model keeps; a new model joins by registering in models/registry.

For each registry name, at a tiny width: the output has one logit map per class at the
size the model promises, every parameter gets a finite gradient, and the TorchScript
compile computes what eager mode computes.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.models import build_model, example_input_size, get_spec, list_models

IN_CHANNELS, NUM_CLASSES = 3, 4


def tiny(name: str) -> nn.Module:
    """Registry model ``name`` at the smallest width its builder offers."""
    overrides = {"base_channels": 4} if "base_channels" in get_spec(name).options() else {}
    return build_model(name, IN_CHANNELS, NUM_CLASSES, **overrides)


def batch(model: nn.Module, size: int = 40) -> torch.Tensor:
    side = example_input_size(model, size)
    return torch.randn(2, IN_CHANNELS, side, side)


def heads(output: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """Deep-supervision models return one logit map per head while training."""
    return list(output) if isinstance(output, (list, tuple)) else [output]


@pytest.fixture(params=list_models())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_registry_is_not_empty() -> None:
    assert {"unet", "unetpp"} <= set(list_models())


def test_output_shape(name: str) -> None:
    model = tiny(name).eval()
    image = batch(model)
    side = image.shape[-1]
    expected = model.output_size(side) if hasattr(model, "output_size") else side
    with torch.no_grad():
        out = model(image)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, NUM_CLASSES, expected, expected)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    model = tiny(name).train()
    loss = sum(head.square().mean() for head in heads(model(batch(model))))
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {param_name} gradient not finite"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scripted_equals_eager(name: str) -> None:
    model = tiny(name).eval()
    image = batch(model, 32)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), model(image))
