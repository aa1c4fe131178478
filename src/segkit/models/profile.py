"""What a model costs: parameters, FLOPs (counted on the meta device) and CPU latency."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segkit.errors import OptionError
from segkit.models.parts import count_parameters
from segkit.models.registry import build_model, get_spec, list_models
from segkit.models.unet import input_size_for_output
from segkit.models.unetpp import UNetPlusPlus


def example_input_size(model: nn.Module, size: int) -> int:
    """``size`` for same-padding models; the smallest valid input >= ``size`` otherwise."""
    if getattr(model, "padding", "same") != "valid":
        return size
    candidate = input_size_for_output(1, model.depth)
    step = 2**model.depth
    while candidate < size:
        candidate += step
    return candidate


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations of one eval-mode forward pass (a multiply-add counts 2).

    Counted by ``torch.utils.flop_counter`` on the meta device, so no arithmetic runs:
    convolutions and matrix products only; BatchNorm, ReLU and pooling (well under 1 %
    for these networks) are not counted.
    """
    was_training = model.training
    meta = _to_meta(model).eval()
    with FlopCounterMode(display=False) as counter:
        meta(torch.empty(input_shape, device="meta"))
    model.train(was_training)
    return int(counter.get_total_flops())


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(model) if _is_materialised(model) else model
    return clone.to("meta")


def _is_materialised(model: nn.Module) -> bool:
    return any(not p.is_meta for p in model.parameters())


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``segkit models``."""

    name: str
    description: str
    parameters: int
    gflops: float
    input_size: int
    output_size: int


def describe_model(
    name: str, *, in_channels: int = 3, num_classes: int = 2, size: int = 256
) -> ModelInfo:
    """Parameters and GFLOPs (one image of ``size × size``) of registry model ``name``.

    Valid-padding models are measured at the smallest valid input >= ``size``.
    """
    spec = get_spec(name)
    with torch.device("meta"):
        model = build_model(name, in_channels, num_classes)
    input_size = example_input_size(model, size)
    flops = count_flops(model, (1, in_channels, input_size, input_size))
    output_size = model.output_size(input_size) if hasattr(model, "output_size") else input_size
    return ModelInfo(
        name=name,
        description=spec.description,
        parameters=count_parameters(model),
        gflops=flops / 1e9,
        input_size=input_size,
        output_size=output_size,
    )


def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], *, repeats: int = 5, warmup: int = 1
) -> float:
    """Best-of-``repeats`` wall time in seconds of an eval-mode forward pass.

    The minimum, not the mean, because other processes on a shared machine only ever
    add time.
    """
    check = repeats if isinstance(repeats, int) and not isinstance(repeats, bool) else 0
    if check < 1:
        raise ValueError(f"repeats must be an integer >= 1; got {repeats!r}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.randn(input_shape, device=device)
    times = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    model.train(was_training)
    return min(times)


@dataclass(frozen=True)
class PruningLevel:
    """Cost of a UNet++ pruned to ``level``."""

    level: int
    parameters: int
    gflops: float
    latency_ms: float | None


def pruning_table(
    name: str,
    *,
    in_channels: int = 3,
    num_classes: int = 2,
    size: int = 256,
    repeats: int = 3,
    measure: bool = True,
) -> list[PruningLevel]:
    """Parameters, GFLOPs and CPU latency (batch 1, ``size × size``) per pruning level.

    ``measure=False`` skips the timing (latency ``None``). Raises ``OptionError`` for
    a model that cannot be pruned.
    """
    model = build_model(name, in_channels, num_classes)
    if not isinstance(model, UNetPlusPlus) or not model.deep_supervision:
        prunable = [n for n in list_models() if get_spec(n).builder is UNetPlusPlus]
        raise OptionError(
            f"model {name!r} cannot be pruned; prunable models: {', '.join(prunable)}"
        )
    model = model.to("cpu").eval()
    shape = (1, in_channels, size, size)
    rows = []
    for level in range(1, model.depth + 1):
        model.prune(level)
        latency = measure_latency(model, shape, repeats=repeats) * 1e3 if measure else None
        rows.append(
            PruningLevel(
                level=level,
                parameters=model.num_parameters(level),
                gflops=count_flops(model, shape) / 1e9,
                latency_ms=latency,
            )
        )
    model.prune(model.depth)
    return rows
