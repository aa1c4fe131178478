"""Model shapes, sizes, registry, UNet++ pruning, bf16 + channels_last, overfitting, checkpoints."""

from __future__ import annotations

import contextlib
import itertools
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_models import assert_script_round_trip, script
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from segkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from segkit.devices import Runtime, resolve_device, resolve_precision, resolve_runtime
from segkit.errors import OptionError
from segkit.losses import build_loss
from segkit.models import (
    UNet,
    UNetPlusPlus,
    build_model,
    count_flops,
    count_parameters,
    describe_model,
    input_size_for_output,
    list_models,
    pruning_table,
    valid_output_size,
)

# Exact counts, stated in the docs: the default `unet` (3 → 2 channels) with BatchNorm,
# and the paper's own network (1 → 2 channels, no BatchNorm, as in `unet-valid`).
UNET_DEFAULT_PARAMS = 31_037_698
UNET_PAPER_PARAMS = 31_030_658


def _meta(name: str, in_channels: int = 3, num_classes: int = 2, **overrides) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, in_channels, num_classes, **overrides)


def _unet_params_by_formula(
    in_channels: int, num_classes: int, base: int, depth: int, batch_norm: bool
) -> int:
    """Independent count: conv weights (+ bias or BN affine), up-convs, head."""

    def block(c_in: int, c_out: int) -> int:
        extra = 2 * c_out if batch_norm else c_out  # BN gamma+beta, or a conv bias
        return c_in * c_out * 9 + extra + c_out * c_out * 9 + extra

    widths = [base * 2**i for i in range(depth + 1)]
    total = block(in_channels, widths[0])
    total += sum(block(widths[i - 1], widths[i]) for i in range(1, depth + 1))
    for i in range(depth):
        total += widths[i + 1] * widths[i] * 4 + widths[i]  # 2×2 transposed conv + bias
        total += block(2 * widths[i], widths[i])
    return total + widths[0] * num_classes + num_classes


# --- U-Net shapes -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 101), (1, 1), (16, 16), (97, 13)])
def test_same_padding_keeps_any_size(size: tuple[int, int]) -> None:
    model = build_model("unet-tiny", 3, 4, base_channels=4).eval()
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 4, *size)


def test_same_padding_crops_where_it_padded() -> None:
    # Padding goes to the bottom/right, so the logits of the original pixels are the
    # top-left window of the padded image's logits; a centred crop would shift them.
    model = build_model("unet-tiny", 1, 2, base_channels=4, depth=2).eval()
    x = torch.randn(1, 1, 37, 41)
    padded = F.pad(x, (0, 3, 0, 3), mode="replicate")  # 40 × 44, multiples of 4
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(padded)[..., :37, :41])


@pytest.mark.parametrize("in_channels", [1, 3])
def test_grayscale_and_rgb_inputs(in_channels: int) -> None:
    model = build_model("unet-tiny", in_channels, 2, base_channels=4)
    assert model(torch.randn(1, in_channels, 32, 32)).shape == (1, 2, 32, 32)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, in_channels + 1, 32, 32))


def test_valid_padding_matches_the_paper() -> None:
    assert valid_output_size(572) == 388
    assert input_size_for_output(388) == 572
    # Full width on the meta device: shapes only, no arithmetic.
    model = _meta("unet-valid", 1, 2)
    assert model(torch.empty(1, 1, 572, 572, device="meta")).shape == (1, 2, 388, 388)
    # Real arithmetic on a narrow network, non-square.
    narrow = build_model("unet-valid", 1, 2, base_channels=2).eval()
    with torch.inference_mode():
        assert narrow(torch.randn(1, 1, 572, 188)).shape == (1, 2, 388, 4)


def test_valid_padding_rejects_unfit_sizes_with_nearest_sizes() -> None:
    with pytest.raises(ValueError, match=r"nearest valid sizes: 252, 268"):
        valid_output_size(256)
    with pytest.raises(ValueError, match=r"smallest valid size: 188"):
        valid_output_size(100)
    model = build_model("unet-valid", 1, 2, base_channels=2)
    with pytest.raises(ValueError, match="does not fit"):
        model(torch.randn(1, 1, 256, 268))


@given(st.integers(1, 600), st.integers(1, 5))
@settings(max_examples=150, deadline=None)
def test_input_size_for_output_is_the_smallest_sufficient_input(tile: int, depth: int) -> None:
    size = input_size_for_output(tile, depth)
    out = valid_output_size(size, depth)
    assert out >= tile
    # Valid inputs step by 2**depth: the previous one is either invalid or too small.
    smaller = size - 2**depth
    if smaller > 0:
        with contextlib.suppress(ValueError):
            assert valid_output_size(smaller, depth) < tile
    # Output shrinks by a constant margin: 184 for the paper's depth 4.
    if depth == 4:
        assert size - out == 184


@given(st.integers(188, 700))
@settings(max_examples=60, deadline=None)
def test_valid_output_size_agrees_with_the_network(size: int) -> None:
    model = _meta("unet-valid", 1, 2)
    try:
        expected = valid_output_size(size)
    except ValueError:
        with pytest.raises(ValueError):
            model(torch.empty(1, 1, size, 188, device="meta"))
        return
    assert model(torch.empty(1, 1, size, 188, device="meta")).shape[-2] == expected


def test_bilinear_up_mode_and_depth_options() -> None:
    model = build_model("unet", 3, 2, base_channels=4, depth=2, up_mode="bilinear")
    assert model(torch.randn(1, 3, 21, 22)).shape == (1, 2, 21, 22)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


# --- parameter counts and FLOPs -----------------------------------------------------------


def test_default_unet_parameter_count() -> None:
    assert count_parameters(_meta("unet", 3, 2)) == UNET_DEFAULT_PARAMS
    assert _unet_params_by_formula(3, 2, 64, 4, batch_norm=True) == UNET_DEFAULT_PARAMS
    paper = _meta("unet-valid", 1, 2)
    assert count_parameters(paper) == UNET_PAPER_PARAMS
    assert _unet_params_by_formula(1, 2, 64, 4, batch_norm=False) == UNET_PAPER_PARAMS


@pytest.mark.parametrize("base,depth,bn", [(4, 2, True), (6, 3, False), (8, 1, True)])
def test_parameter_count_formula(base: int, depth: int, bn: bool) -> None:
    model = UNet(2, 3, base_channels=base, depth=depth, batch_norm=bn)
    assert count_parameters(model) == _unet_params_by_formula(2, 3, base, depth, bn)


def _flops_by_hooks(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            # Every input pixel meets the whole kernel once.
            macs = inputs[0].numel() * module.out_channels * module.kernel_size[0] ** 2
        else:
            macs = output.numel() * module.in_channels * module.kernel_size[0] ** 2
        total += 2 * macs

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    with torch.inference_mode():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize("name", ["unet-tiny", "unetpp-small", "unet-valid"])
def test_flop_count_matches_hand_count(name: str) -> None:
    model = build_model(name, 3, 2, base_channels=4)
    size = 188 if name == "unet-valid" else 48
    x = torch.randn(1, 3, size, size)
    assert count_flops(model, tuple(x.shape)) == _flops_by_hooks(model, x)


def test_describe_model_reports_consistent_numbers() -> None:
    info = describe_model("unet")
    assert info.parameters == UNET_DEFAULT_PARAMS
    # 256×256 pads to nothing; FLOPs scale with pixels: half the area, half the FLOPs.
    half = describe_model("unet", size=128)
    assert info.gflops == pytest.approx(4 * half.gflops, rel=1e-9)
    valid = describe_model("unet-valid")
    assert (valid.input_size, valid.output_size) == (268, 84)


# --- registry ------------------------------------------------------------------------------


def test_registry_names_and_sizes() -> None:
    names = list_models()
    for required in ("unet", "unet-small", "unet-tiny", "unet-valid", "unetpp", "unetpp-small"):
        assert required in names
    params = {name: describe_model(name).parameters for name in names}
    assert params["unet-tiny"] < params["unet-small"] < params["unet"]
    assert params["unetpp-small"] < params["unetpp"]
    assert isinstance(_meta("unetpp"), UNetPlusPlus)
    assert _meta("unet-valid").padding == "valid"


def test_registry_errors_list_the_choices() -> None:
    with pytest.raises(OptionError, match=r"unknown model 'resnet'.*unet-small"):
        build_model("resnet")
    with pytest.raises(OptionError, match=r"no option widht.*base_channels"):
        build_model("unet", widht=3)
    with pytest.raises(OptionError, match=r"padding must be one of same, valid"):
        build_model("unet", padding="full")
    with pytest.raises(OptionError, match=r"depth must be an integer >= 1"):
        build_model("unet", depth=0)


def test_build_model_records_its_config() -> None:
    model = build_model("unet-tiny", 1, 5, base_channels=4)
    assert model.segkit_config.to_dict() == {
        "architecture": "unet-tiny",
        "in_channels": 1,
        "num_classes": 5,
        "model_kwargs": {"base_channels": 4},
    }


def test_traceable_for_any_size() -> None:
    # The ONNX exporter traces; the pad/crop must stay symbolic, not baked to one size.
    model = build_model("unet-tiny", 3, 2, base_channels=4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # still what ONNX export uses
        traced = torch.jit.trace(model, torch.randn(1, 3, 32, 32))
    other = torch.randn(2, 3, 37, 45)
    torch.testing.assert_close(traced(other), model(other))


@pytest.mark.parametrize(("name", "size"), [("unet-tiny", (37, 45)), ("unet-valid", (188, 204))])
def test_unets_compile_with_torchscript(name: str, size: tuple[int, int]) -> None:
    model = build_model(name, 3, 2, base_channels=4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    image = torch.randn(1, 3, *size)
    torch.testing.assert_close(scripted(image), model(image))
    if name == "unet-valid":
        with pytest.raises(Exception, match="does not fit the valid-padding U-Net"):
            scripted(torch.randn(1, 3, 190, 190))


def test_valid_size_helpers_take_numpy_integers_and_refuse_floats() -> None:
    assert valid_output_size(np.int64(572)) == 388
    with pytest.raises(ValueError, match=r"must be an integer, got 572\.0"):
        valid_output_size(572.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["unet-tiny", "unetpp-small"])
def test_torch_export_with_dynamic_height_and_width(name: str) -> None:
    # torch.export is what torch.compile and the newer ONNX exporter build on.
    model = build_model(name, 3, 2, base_channels=4, depth=3).eval()
    height, width = torch.export.Dim("height", min=32), torch.export.Dim("width", min=32)
    program = torch.export.export(
        model, (torch.randn(1, 3, 64, 64),), dynamic_shapes={"x": {2: height, 3: width}}
    )
    x = torch.randn(1, 3, 37, 101)
    torch.testing.assert_close(program.module()(x), model(x))


# --- UNet++ ----------------------------------------------------------------------------------


def test_unetpp_paper_size() -> None:
    # The paper's UNet++ (width 32) has ~9.04M parameters; 4 heads of 32·2+2 each.
    model = _meta("unetpp")
    assert count_parameters(model) == 9_046_056
    assert model.num_parameters(4) == 9_046_056 - 3 * 66


def test_unetpp_deep_supervision_heads_in_training() -> None:
    model = build_model("unetpp", 3, 3, base_channels=4).train()
    outputs = model(torch.randn(2, 3, 37, 101))
    assert isinstance(outputs, list) and len(outputs) == 4
    assert all(o.shape == (2, 3, 37, 101) for o in outputs)
    model.eval()
    assert model(torch.randn(1, 3, 37, 101)).shape == (1, 3, 37, 101)


def test_unetpp_pruned_outputs_equal_the_heads_of_the_full_network() -> None:
    model = build_model("unetpp", 3, 2, base_channels=4).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.inference_mode():
        model.train()  # list of all heads, but BatchNorm kept in eval mode below
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        heads = model(x)
        model.eval()
        for level in range(1, 5):
            torch.testing.assert_close(model.prune(level)(x), heads[level - 1])
    assert model.level == 4


def test_unetpp_pruning_skips_deeper_nodes() -> None:
    model = build_model("unetpp", 3, 2, base_channels=4).eval().prune(2)
    ran: set[str] = set()
    for key, node in model.nodes.items():
        node.register_forward_hook(lambda *_, key=key: ran.add(key))
    model(torch.randn(1, 3, 32, 32))
    assert ran == {"x0_0", "x1_0", "x2_0", "x0_1", "x1_1", "x0_2"}
    params = [model.num_parameters(level) for level in range(1, 5)]
    assert params == sorted(params) and len(set(params)) == 4
    assert params[-1] == count_parameters(model) - 3 * model.heads["1"].weight.numel() - 3 * 2


@pytest.mark.parametrize("level", [4, 2])
def test_unetpp_compiles_with_torchscript(level: int) -> None:
    # Pruning is a plain int attribute, so a model pruned before scripting stays pruned.
    model = build_model("unetpp-small", 3, 2, base_channels=4).eval().prune(level)
    assert_script_round_trip(model, torch.randn(1, 3, 37, 45))


@pytest.mark.parametrize("level", [4, 2])
def test_scripted_unetpp_returns_every_head_in_training(level: int) -> None:
    model = build_model("unetpp-small", 3, 2, base_channels=4).train().prune(level)
    scripted = script(model)
    image = torch.randn(2, 3, 37, 45)
    heads, scripted_heads = model(image), scripted(image)
    assert isinstance(scripted_heads, list) and len(scripted_heads) == level
    torch.testing.assert_close(scripted_heads, heads)


def test_unetpp_pruning_errors() -> None:
    model = build_model("unetpp", 3, 2, base_channels=4)
    with pytest.raises(ValueError, match=r"1\.\.4"):
        model.prune(5)
    plain = build_model("unetpp", 3, 2, base_channels=4, deep_supervision=False)
    assert isinstance(plain.train()(torch.randn(2, 3, 32, 32)), torch.Tensor)
    with pytest.raises(ValueError, match="deep_supervision"):
        plain.prune(2)
    with pytest.raises(OptionError, match="cannot be pruned"):
        pruning_table("unet-tiny", measure=False)


def test_pruning_table_without_timing() -> None:
    rows = pruning_table("unetpp-small", size=64, measure=False)
    assert [row.level for row in rows] == [1, 2, 3, 4]
    assert all(a.gflops < b.gflops for a, b in itertools.pairwise(rows))
    assert all(row.latency_ms is None for row in rows)


# --- bf16 autocast + channels_last ---------------------------------------------------------


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.detach().float() - expected.detach()).norm() / expected.detach().norm())


def _bf16_and_fp32_pass(name: str, train_mode: bool) -> tuple[list, list, nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = build_model(name, 3, 3, base_channels=8, depth=2)
    fast = build_model(name, 3, 3, base_channels=8, depth=2)
    fast.load_state_dict(reference.state_dict())
    reference.train(train_mode)
    fast.train(train_mode)
    runtime = Runtime(torch.device("cpu"), torch.bfloat16, channels_last=True)
    fast = runtime.prepare_model(fast)
    x = torch.randn(2, 3, 40, 48)
    target = torch.randint(0, 3, (2, 40, 48))
    loss_fn = build_loss("ce+dice")
    ref_out = reference(x)
    ref_loss = loss_fn(ref_out, target)
    ref_loss.backward()
    with runtime.autocast():
        fast_out = fast(runtime.prepare_input(x))
    fast_loss = loss_fn(fast_out, target)
    assert fast_loss.dtype == torch.float32  # losses run in fp32 under autocast
    fast_loss.backward()
    assert abs((fast_loss - ref_loss).item()) < 0.01 * ref_loss.item()
    listify = lambda out: out if isinstance(out, list) else [out]  # noqa: E731
    return listify(fast_out), listify(ref_out), fast, reference


@pytest.mark.parametrize("name", ["unet-tiny", "unetpp-small"])
def test_bf16_channels_last_matches_fp32_eval_batchnorm(name: str) -> None:
    fast_out, ref_out, fast, reference = _bf16_and_fp32_pass(name, train_mode=False)
    assert fast_out[-1].dtype == torch.bfloat16
    first_conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    # bf16 keeps 8 mantissa bits (~0.4 % per rounding); measured ~1 %, a layout or
    # precision bug gives errors of order 1.
    for got, want in zip(fast_out, ref_out, strict=True):
        assert _relative_error(got, want) < 0.03
    ref_params = dict(reference.named_parameters())
    for pname, param in fast.named_parameters():
        if param.grad is not None:  # pruned/unused UNet++ heads get none
            assert _relative_error(param.grad, ref_params[pname].grad) < 0.2, pname


@pytest.mark.parametrize("name", ["unet-tiny", "unetpp-small"])
def test_bf16_channels_last_matches_fp32_training_mode(name: str) -> None:
    # With batch statistics, BatchNorm centres pre-activations on 0 and ReLU's kink
    # turns bf16 rounding into flipped gradient masks (measured: per-layer gradient
    # errors 15-25 %, cosine of the whole gradient ~0.97-0.99 on these sizes), so the
    # gradient is compared by direction; outputs stay within a few percent.
    fast_out, ref_out, fast, reference = _bf16_and_fp32_pass(name, train_mode=True)
    for got, want in zip(fast_out, ref_out, strict=True):
        assert _relative_error(got, want) < 0.06
    fast_grad = torch.cat([p.grad.flatten() for p in fast.parameters()])
    ref_grad = torch.cat([p.grad.flatten() for p in reference.parameters()])
    assert float(F.cosine_similarity(fast_grad, ref_grad, dim=0)) > 0.9


def test_channels_last_fp32_is_the_same_function() -> None:
    model = build_model("unet-tiny", 3, 2, base_channels=4).eval()
    x = torch.randn(1, 3, 33, 35)
    expected = model(x)
    runtime = Runtime(torch.device("cpu"), None, channels_last=True)
    got = runtime.prepare_model(model)(runtime.prepare_input(x))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    elif not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(OptionError, match=r"auto, cpu, cuda, mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(OptionError, match=r"fp32, bf16, fp16"):
        resolve_precision("half", torch.device("cpu"))
    with pytest.raises(OptionError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("fp32", torch.device("cpu")) is None
    runtime = resolve_runtime("cpu", "bf16")
    assert (runtime.amp_dtype, runtime.channels_last, runtime.precision) == (
        torch.bfloat16,
        True,
        "bf16",
    )
    assert not resolve_runtime("cpu", "fp32").channels_last
    assert resolve_runtime("cpu", "fp32", "on").channels_last
    assert not Runtime(torch.device("cpu"), torch.bfloat16).needs_grad_scaler


# --- the model and loss really learn -------------------------------------------------------


STEPS = 50


def _generated_image(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A disc (class 1) and a bar (class 2) on noise; colours differ per class."""
    generator = torch.Generator().manual_seed(1)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    target = torch.zeros(size, size, dtype=torch.long)
    target[(ys - 12) ** 2 + (xs - 11) ** 2 < 49] = 1
    target[22:27, 4:28] = 2
    colours = torch.tensor([[0.2, 0.2, 0.2], [0.9, 0.3, 0.1], [0.1, 0.4, 0.9]])
    image = colours[target].permute(2, 0, 1)
    image = image + 0.15 * torch.randn(image.shape, generator=generator)
    return image.unsqueeze(0), target.unsqueeze(0)


@pytest.mark.parametrize(
    "name,spec,precision",
    [
        ("unet-tiny", "ce+dice", "fp32"),
        ("unetpp-small", "focal+dice", "fp32"),
        ("unet-tiny", "ce", "bf16"),
    ],
)
def test_tiny_model_overfits_one_image(name: str, spec: str, precision: str) -> None:
    torch.manual_seed(0)
    image, target = _generated_image()
    target_with_ignore = target.clone()
    target_with_ignore[0, :2] = 255  # an ignored strip must not disturb learning
    runtime = resolve_runtime("cpu", precision)
    model = runtime.prepare_model(build_model(name, 3, 3, base_channels=8, depth=2))
    loss_fn = build_loss(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(STEPS):
        optimizer.zero_grad()
        with runtime.autocast():
            outputs = model(runtime.prepare_input(image))
        loss_fn(outputs, target_with_ignore).backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode(), runtime.autocast():
        correct = model(runtime.prepare_input(image)).argmax(1) == target
    # Scored like the metrics: ignored pixels left out.
    assert correct[target_with_ignore != 255].float().mean().item() > 0.95


def test_overfit_bar_is_out_of_reach_without_learning() -> None:
    # No constant prediction reaches 0.95 on the generated image, nor does a fresh model.
    image, target = _generated_image()
    assert max((target == c).float().mean().item() for c in range(3)) < 0.8
    model = build_model("unet-tiny", 3, 3, base_channels=8, depth=2).eval()
    with torch.inference_mode():
        assert (model(image).argmax(1) == target).float().mean().item() < 0.95


# --- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path) -> None:
    model = build_model("unetpp", 1, 3, base_channels=4)
    model.train()(torch.randn(2, 1, 16, 16))  # move BatchNorm running stats off defaults
    model = model.to(memory_format=torch.channels_last)
    tensors, sidecar = save_checkpoint(
        tmp_path / "best.safetensors",
        model,
        classes=["_background_", "cat", "dog"],
        normalization={"mean": [0.5], "std": [0.25]},
        epoch=7,
    )
    assert (tensors.name, sidecar.name) == ("best.safetensors", "best.json")
    meta = json.loads(sidecar.read_text())
    assert meta["architecture"] == "unetpp" and meta["model_kwargs"] == {"base_channels": 4}
    assert (meta["in_channels"], meta["epoch"], meta["classes"][1]) == (1, 7, "cat")
    loaded = load_checkpoint(tmp_path / "best")
    assert loaded.meta.normalization == {"mean": [0.5], "std": [0.25]}
    assert not loaded.model.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_errors(tmp_path) -> None:
    model = build_model("unet-tiny", 3, 2, base_channels=4)
    with pytest.raises(CheckpointError, match="3 class names"):
        save_checkpoint(tmp_path / "a", model, classes=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="not built by"):
        save_checkpoint(tmp_path / "a", nn.Conv2d(1, 1, 1), classes=["a", "b"])
    with pytest.raises(CheckpointError, match="metadata not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    save_checkpoint(tmp_path / "a", model, classes=["bg", "fg"])
    other = build_model("unet-tiny", 3, 2, base_channels=8)
    save_checkpoint(tmp_path / "b", other, classes=["bg", "fg"])
    (tmp_path / "a.safetensors").write_bytes((tmp_path / "b.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        load_checkpoint(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(tmp_path / "a.safetensors", verify_hash=False)
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "c")
    # A pickle in place of the tensors is refused, never unpickled.
    torch.save(model.state_dict(), tmp_path / "d.safetensors")
    sidecar = json.loads((tmp_path / "a.json").read_text())
    sidecar["tensors_sha256"] = None
    (tmp_path / "d.json").write_text(json.dumps(sidecar))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "d")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model_kwargs", [1, 2]),
        ("normalization", "xx"),
        ("extra", 3),
        ("tensors_sha256", ["ab"]),
    ],
)
def test_malformed_sidecar_keys_are_one_line_errors(tmp_path, key: str, value: object) -> None:
    model = build_model("unet-tiny", 3, 2, base_channels=4)
    save_checkpoint(tmp_path / "a", model, classes=["a", "b"])
    sidecar = json.loads((tmp_path / "a.json").read_text())
    sidecar[key] = value
    (tmp_path / "a.json").write_text(json.dumps(sidecar))
    with pytest.raises(CheckpointError, match=rf"a\.json: key '{key}'"):
        load_checkpoint(tmp_path / "a")


def test_binary_head_checkpoint_names_two_classes(tmp_path) -> None:
    model = build_model("unet-tiny", 3, 1, base_channels=4)
    save_checkpoint(tmp_path / "bin", model, classes=["_background_", "cell"])
    assert load_checkpoint(tmp_path / "bin").meta.classes == ["_background_", "cell"]
