"""UNet 3+ and the ResNet-encoder U-Nets: shapes, deep supervision, gradients, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_models import assert_script_round_trip, script
from torch import nn

from segkit.checkpoint import load_checkpoint, save_checkpoint
from segkit.losses import build_loss
from segkit.models import (
    ResUNet,
    UNet3Plus,
    build_model,
    count_flops,
    count_parameters,
    describe_model,
    list_models,
)
from segkit.models.export import check_onnx, onnx_bytes

# Exact counts (3 → 2 channels). UNet 3+ matches the paper's 26.97M; the ResNet U-Nets
# have the layout of SMP's Unet("resnet18"/"resnet34") (encoder, decoder 256…16, 3×3 head).
UNET3P_PARAMS = 27_003_850
UNET_R18_PARAMS = 14_328_354
UNET_R34_PARAMS = 24_436_514

# Small versions of every new registry entry, so tests run real arithmetic in milliseconds.
TINY = {
    "unet3p": {"base_channels": 4, "cat_channels": 4},
    "unet3p-cgm": {"base_channels": 4, "cat_channels": 4, "classification_guided": True},
    "unet3p-small": {"base_channels": 4, "cat_channels": 3, "depth": 3},
    "unet-r18": {"width": 8, "decoder_channels": (16, 8, 8, 4, 4)},
    "unet-r34": {"width": 4, "decoder_channels": (8, 8, 4, 4, 4)},
}


def _tiny(key: str, in_channels: int = 3, num_classes: int = 3) -> nn.Module:
    name = key.removesuffix("-cgm")
    return build_model(name, in_channels, num_classes, **TINY[key])


def _heads(model: nn.Module) -> int:
    return model.depth + 1 if isinstance(model, UNet3Plus) and model.deep_supervision else 1


def test_new_models_are_registered() -> None:
    names = list_models()
    for name in ("unet3p", "unet3p-small", "unet-r18", "unet-r34"):
        assert name in names
    assert describe_model("unet3p").parameters == UNET3P_PARAMS
    assert describe_model("unet-r18").parameters == UNET_R18_PARAMS
    assert describe_model("unet-r34").parameters == UNET_R34_PARAMS
    assert describe_model("unet3p-small").parameters < describe_model("unet3p").parameters / 10


@pytest.mark.parametrize("key", list(TINY))
@pytest.mark.parametrize("size", [(37, 45), (1, 1), (97, 13)])
def test_output_shape_for_odd_sizes(key: str, size: tuple[int, int]) -> None:
    model = _tiny(key).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, *size)).shape == (2, 3, *size)


@pytest.mark.parametrize("key", list(TINY))
def test_training_outputs_and_every_parameter_gets_a_gradient(key: str) -> None:
    model = _tiny(key).train()
    outputs = model(torch.randn(2, 3, 37, 45))
    heads = outputs if isinstance(outputs, list) else [outputs]
    assert len(heads) == _heads(model)
    assert all(head.shape == (2, 3, 37, 45) for head in heads)
    build_loss("ce+dice")(outputs, torch.randint(0, 3, (2, 37, 45))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("key", ["unet3p", "unet3p-cgm"])
def test_unet3p_last_training_head_is_the_eval_output(key: str) -> None:
    # Deepest first, finest last: the last training output is what eval returns.
    model = _tiny(key).eval()
    x = torch.randn(1, 3, 40, 24)
    with torch.inference_mode():
        expected = model(x)
        model.train()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | nn.Dropout):
                module.eval()
        heads = model(x)
    torch.testing.assert_close(heads[-1], expected)
    assert not torch.allclose(heads[0], heads[-1])


def test_unet3p_without_deep_supervision_returns_one_tensor() -> None:
    model = build_model("unet3p", 3, 2, base_channels=4, cat_channels=4, deep_supervision=False)
    assert isinstance(model.train()(torch.randn(2, 3, 32, 32)), torch.Tensor)
    assert len(model.heads) == 1


def test_unet3p_decoder_nodes_have_320_channels() -> None:
    with torch.device("meta"):
        model = build_model("unet3p", 3, 2)
    seen: list[tuple[int, int]] = []
    for fuse in model.fuse:
        fuse.register_forward_hook(
            lambda _m, inputs, output: seen.append((inputs[0].shape[1], output.shape[1]))
        )
    branch_widths = {branch[-3].out_channels for branches in model.branches for branch in branches}
    model.eval()(torch.empty(1, 3, 64, 64, device="meta"))
    assert seen == [(320, 320)] * 4  # 5 branches × 64 channels, fused at 320
    assert branch_widths == {64}
    assert model.fused_channels == 320


def _unet3p_params_by_formula(in_channels: int, num_classes: int, base: int, cat: int) -> int:
    """Independent count: encoder blocks, 4 × 5 branches, 4 fusions, 5 heads."""

    def conv_bn(c_in: int, c_out: int) -> int:
        return c_in * c_out * 9 + 2 * c_out

    widths = [base * 2**level for level in range(5)]
    fused = 5 * cat
    total = sum(
        conv_bn(widths[level - 1] if level else in_channels, widths[level])
        + conv_bn(widths[level], widths[level])
        for level in range(5)
    )
    for level in range(4):  # decoder node at `level` reads levels 0..4
        for source in range(5):
            channels = widths[source] if source <= level or source == 4 else fused
            total += conv_bn(channels, cat)
        total += conv_bn(fused, fused)
    head = lambda c: c * num_classes * 9 + num_classes  # noqa: E731
    return total + head(widths[4]) + 4 * head(fused)


def test_unet3p_parameter_count_is_pinned() -> None:
    assert _unet3p_params_by_formula(3, 2, 64, 64) == UNET3P_PARAMS
    model = UNet3Plus(2, 5, base_channels=6, cat_channels=5)
    assert count_parameters(model) == _unet3p_params_by_formula(2, 5, 6, 5)
    with torch.device("meta"):
        cgm = UNet3Plus(3, 2, classification_guided=True)
    assert count_parameters(cgm) == UNET3P_PARAMS + 1024 * 2 + 2


def test_classification_guidance_suppresses_absent_classes() -> None:
    model = _tiny("unet3p-cgm", num_classes=3).eval()
    conv = model.classifier[1]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-30.0, -30.0, 30.0]))  # class 1 absent, class 2 present
        guided = model(x)
        model.classification_guided = False
        plain = model(x)
    # Background (class 0) is never gated; log σ(30) ≈ 0; log σ(−30) ≈ −30.
    torch.testing.assert_close(guided[:, 0], plain[:, 0])
    torch.testing.assert_close(guided[:, 2], plain[:, 2])
    torch.testing.assert_close(guided[:, 1], plain[:, 1] - 30.0, atol=1e-4, rtol=0)


@pytest.mark.parametrize("key", list(TINY))
def test_scripted_equals_eager(key: str) -> None:
    model = _tiny(key).eval()
    x = torch.randn(1, 3, 37, 45)
    assert_script_round_trip(model, x)
    model.train()
    scripted = script(model)
    torch.manual_seed(1)
    eager = model(x)
    torch.manual_seed(1)  # the same dropout mask in the CGM branch
    torch.testing.assert_close(scripted(x), eager)


@pytest.mark.parametrize("key", list(TINY))
def test_onnx_round_trip(key: str, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _tiny(key).eval()
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes(model, torch.randn(1, 3, 64, 64)))
    checks = check_onnx(path, model, [(1, 3, 64, 64), (2, 3, 37, 101)])
    assert all(check.ok for check in checks), checks


@pytest.mark.parametrize("key", ["unet3p-cgm", "unet-r18"])
def test_torch_export_with_dynamic_height_and_width(key: str) -> None:
    # Sides from 33 up: at 32 or less the ResNet's bottleneck is 1 × 1 and export
    # specialises on it. UNet 3+ at depth 2: export time grows with the node count.
    overrides = {"depth": 2} if key.startswith("unet3p") else {}
    model = build_model(key.removesuffix("-cgm"), 3, 3, **TINY[key], **overrides).eval()
    height, width = torch.export.Dim("height", min=33), torch.export.Dim("width", min=33)
    program = torch.export.export(
        model, (torch.randn(1, 3, 64, 64),), dynamic_shapes={"x": {2: height, 3: width}}
    )
    x = torch.randn(1, 3, 37, 101)
    torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("key", ["unet3p-cgm", "unet-r18"])
def test_checkpoint_round_trip(key: str, tmp_path: Path) -> None:
    model = _tiny(key, num_classes=2)
    model.train()(torch.randn(2, 3, 32, 32))  # BatchNorm statistics off their defaults
    save_checkpoint(tmp_path / "best", model, classes=["_background_", "x"])
    loaded = load_checkpoint(tmp_path / "best").model
    x = torch.randn(1, 3, 35, 29)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_flops_count_the_new_models() -> None:
    # Convolutions only: a 2× larger side means 4× the FLOPs (sizes already multiples of 32).
    for key in ("unet3p", "unet-r18"):
        model = _tiny(key)
        assert count_flops(model, (1, 3, 128, 128)) == 4 * count_flops(model, (1, 3, 64, 64))


def test_resunet_options_are_checked() -> None:
    with pytest.raises(ValueError, match="blocks must give 4"):
        ResUNet(3, 2, blocks=(2, 2, 2))
    with pytest.raises(ValueError, match="decoder_channels must give 5"):
        ResUNet(3, 2, decoder_channels=(8, 8))
    with pytest.raises(ValueError, match="cat_channels must be an integer >= 1"):
        UNet3Plus(3, 2, cat_channels=0)


@pytest.mark.parametrize("key", ["unet3p-small", "unet-r18"])
def test_tiny_model_overfits_one_image(key: str) -> None:
    # A disc (class 1) and a bar (class 2) on noise, as in test_models, at 64 × 64 so the
    # ResNet's stride-32 bottleneck keeps 2 × 2 pixels for BatchNorm's batch statistics.
    torch.manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    target = torch.zeros(64, 64, dtype=torch.long)
    target[(ys - 24) ** 2 + (xs - 22) ** 2 < 196] = 1
    target[44:54, 8:56] = 2
    colours = torch.tensor([[0.2, 0.2, 0.2], [0.9, 0.3, 0.1], [0.1, 0.4, 0.9]])
    image = (colours[target].permute(2, 0, 1) + 0.15 * torch.randn(3, 64, 64)).unsqueeze(0)
    model = _tiny(key)
    loss_fn = build_loss("ce+dice")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        optimizer.zero_grad()
        loss_fn(model(image), target.unsqueeze(0)).backward()
        optimizer.step()
    with torch.inference_mode():
        accuracy = (model.eval()(image).argmax(1)[0] == target).float().mean().item()
    assert accuracy > 0.95
