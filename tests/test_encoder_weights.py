"""Encoder weights from a local file: torchvision's ResNet key layout, generated here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor

from segkit.errors import OptionError
from segkit.models import EncoderWeightsError, build_model, load_encoder_weights
from segkit.models.encoder_weights import adapt_first_conv

R18 = (2, 2, 2, 2)
R34 = (3, 4, 6, 3)
WIDTH = 8  # torchvision's is 64; the layout is the same, the tests just run faster


def _torchvision_resnet_state(
    blocks: tuple[int, ...], width: int = WIDTH, *, batch_counter: bool = False
) -> dict[str, Tensor]:
    """Random tensors under torchvision's ``ResNet`` (BasicBlock) names and shapes."""
    generator = torch.Generator().manual_seed(0)
    state: dict[str, Tensor] = {}

    def conv(name: str, c_out: int, c_in: int, kernel: int) -> None:
        std = (2.0 / (c_in * kernel * kernel)) ** 0.5
        state[f"{name}.weight"] = (
            torch.randn(c_out, c_in, kernel, kernel, generator=generator) * std
        )

    def bn(name: str, channels: int) -> None:
        state[f"{name}.weight"] = torch.rand(channels, generator=generator) + 0.5
        state[f"{name}.bias"] = 0.1 * torch.randn(channels, generator=generator)
        state[f"{name}.running_mean"] = 0.1 * torch.randn(channels, generator=generator)
        state[f"{name}.running_var"] = torch.rand(channels, generator=generator) + 0.5
        if batch_counter:  # newer torchvision files have it, the 2017 ResNet files do not
            state[f"{name}.num_batches_tracked"] = torch.tensor(100)

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    channels = width
    for stage, count in enumerate(blocks, start=1):
        out = width * 2 ** (stage - 1)
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            conv(f"{prefix}.conv1", out, channels if index == 0 else out, 3)
            bn(f"{prefix}.bn1", out)
            conv(f"{prefix}.conv2", out, out, 3)
            bn(f"{prefix}.bn2", out)
            if index == 0 and stage > 1:
                conv(f"{prefix}.downsample.0", out, channels, 1)
                bn(f"{prefix}.downsample.1", out)
        channels = out
    state["fc.weight"] = torch.randn(1000, channels, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


def _reference_features(state: dict[str, Tensor], x: Tensor, blocks: tuple[int, ...]) -> list:
    """torchvision's ResNet forward (eval), written with functional ops on the state dict."""

    def bn(t: Tensor, name: str) -> Tensor:
        return F.batch_norm(
            t,
            state[f"{name}.running_mean"],
            state[f"{name}.running_var"],
            state[f"{name}.weight"],
            state[f"{name}.bias"],
        )

    x = F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    features = [x]
    x = F.max_pool2d(x, 3, 2, 1)
    for stage, count in enumerate(blocks, start=1):
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            stride = 2 if index == 0 and stage > 1 else 1
            out = F.conv2d(x, state[f"{prefix}.conv1.weight"], stride=stride, padding=1)
            out = F.relu(bn(out, f"{prefix}.bn1"))
            out = bn(F.conv2d(out, state[f"{prefix}.conv2.weight"], padding=1), f"{prefix}.bn2")
            if f"{prefix}.downsample.0.weight" in state:
                down = F.conv2d(x, state[f"{prefix}.downsample.0.weight"], stride=stride)
                x = bn(down, f"{prefix}.downsample.1")
            x = F.relu(out + x)
        features.append(x)
    return features


def _save(state: dict[str, Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def _assert_encoder_computes(model, state: dict[str, Tensor], blocks, x: Tensor, rgb: Tensor):
    with torch.inference_mode():
        got = model.encoder.eval()(x)
        expected = _reference_features(state, rgb, blocks)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_torchvision_layout_safetensors_loads_into_the_encoder(tmp_path: Path) -> None:
    state = _torchvision_resnet_state(R18)
    path = _save(state, tmp_path / "resnet18.safetensors")
    model = build_model("unet-r18", 3, 2, width=WIDTH, encoder_weights=path)
    report = model.segkit_encoder_weights
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.loaded == len(state) - 2
    assert (report.missing, report.unexpected) == ([], [])
    assert report.skipped == ["fc.bias", "fc.weight"]
    assert report.first_conv == "as is"
    assert json.loads(json.dumps(report.to_dict()))["path"] == str(path)
    # The file is not part of the config: a checkpoint holds the trained weights.
    assert model.segkit_config.to_dict()["model_kwargs"] == {"width": WIDTH}
    x = torch.randn(2, 3, 64, 96)
    _assert_encoder_computes(model, state, R18, x, x)


def test_pth_read_with_weights_only(tmp_path: Path) -> None:
    state = _torchvision_resnet_state(R34, batch_counter=True)
    path = _save(state, tmp_path / "resnet34.pth")
    model = build_model("unet-r34", 3, 2, width=WIDTH)
    report = load_encoder_weights(model, path)
    assert report.loaded == len(state) - 2 and not report.missing
    assert int(model.encoder.bn1.num_batches_tracked) == 100
    x = torch.randn(1, 3, 64, 64)
    _assert_encoder_computes(model, state, R34, x, x)


def test_grayscale_input_sums_the_rgb_filters(tmp_path: Path) -> None:
    state = _torchvision_resnet_state(R18)
    path = _save(state, tmp_path / "r18.safetensors")
    model = build_model("unet-r18", 1, 2, width=WIDTH, encoder_weights=path)
    assert model.segkit_encoder_weights.first_conv == "summed"
    # A grey image gives every feature map the RGB network gives its (g, g, g) copy.
    grey = torch.rand(1, 1, 64, 64)
    _assert_encoder_computes(model, state, R18, grey, grey.repeat(1, 3, 1, 1))


def test_four_channel_input_repeats_the_rgb_filters(tmp_path: Path) -> None:
    state = _torchvision_resnet_state(R18)
    path = _save(state, tmp_path / "r18.safetensors")
    model = build_model("unet-r18", 4, 2, width=WIDTH, encoder_weights=path)
    assert model.segkit_encoder_weights.first_conv == "repeated"
    rgb = state["conv1.weight"]
    weight = model.encoder.conv1.weight.detach()
    torch.testing.assert_close(weight[:, :3], rgb * 0.75)
    torch.testing.assert_close(weight[:, 3], rgb[:, 0] * 0.75)
    # The model still runs end to end on 4-channel images.
    assert model.eval()(torch.randn(1, 4, 33, 47)).shape == (1, 2, 33, 47)


def test_adapt_first_conv_refuses_non_rgb_weights() -> None:
    with pytest.raises(ValueError, match="only 3-channel"):
        adapt_first_conv(torch.ones(4, 2, 7, 7), 1)


def _encoder_snapshot(model) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.encoder.state_dict().items()}


def _assert_unchanged(model, before: dict[str, Tensor]) -> None:
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_wrong_layout_file_is_one_clear_error(tmp_path: Path) -> None:
    # A segkit U-Net's own state dict is not a ResNet in torchvision's layout.
    unet = build_model("unet-tiny", 3, 2, base_channels=4)
    path = _save(unet.state_dict(), tmp_path / "unet.safetensors")
    model = build_model("unet-r18", 3, 2, width=WIDTH)
    before = _encoder_snapshot(model)
    with pytest.raises(EncoderWeightsError) as caught:
        load_encoder_weights(model, path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: no tensor has a ResNet key in torchvision's layout")
    assert "decoder.0.0.weight" in message  # names what the file holds instead
    _assert_unchanged(model, before)


def test_resnet18_file_for_resnet34_model(tmp_path: Path) -> None:
    path = _save(_torchvision_resnet_state(R18), tmp_path / "r18.safetensors")
    model = build_model("unet-r34", 3, 2, width=WIDTH)
    before = _encoder_snapshot(model)
    with pytest.raises(EncoderWeightsError, match=r"missing \(layer1\.2\.bn1\.bias"):
        load_encoder_weights(model, path)
    _assert_unchanged(model, before)
    report = load_encoder_weights(model, path, strict=False)
    assert "layer1.2.conv1.weight" in report.missing and not report.unexpected
    assert torch.equal(model.encoder.layer1[2].conv1.weight, before["layer1.2.conv1.weight"])


def test_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    path = _save(_torchvision_resnet_state(R18, width=16), tmp_path / "wide.safetensors")
    model = build_model("unet-r18", 3, 2, width=WIDTH)
    with pytest.raises(EncoderWeightsError, match=r"conv1\.weight: \[16, 3, 7, 7\] in the file"):
        load_encoder_weights(model, path)


def test_file_errors(tmp_path: Path) -> None:
    model = build_model("unet-r18", 3, 2, width=WIDTH)
    with pytest.raises(EncoderWeightsError, match="encoder weights file not found"):
        load_encoder_weights(model, tmp_path / "missing.safetensors")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(EncoderWeightsError, match=r"unknown weights format '\.npz'"):
        load_encoder_weights(model, tmp_path / "w.npz")
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EncoderWeightsError, match="cannot read weights"):
        load_encoder_weights(model, tmp_path / "broken.safetensors")
    # weights_only refuses arbitrary objects instead of unpickling them.
    torch.save({"conv1.weight": Path("x")}, tmp_path / "object.pth")
    with pytest.raises(EncoderWeightsError, match=r"refused: the pickle would load pathlib\."):
        load_encoder_weights(model, tmp_path / "object.pth")
    torch.save({"model": {"conv1.weight": torch.ones(1)}}, tmp_path / "nested.pth")
    with pytest.raises(EncoderWeightsError, match=r"not a flat state dict.*keys include: model"):
        load_encoder_weights(model, tmp_path / "nested.pth")


def test_models_without_a_resnet_encoder_refuse_weights(tmp_path: Path) -> None:
    path = _save(_torchvision_resnet_state(R18), tmp_path / "r18.safetensors")
    with pytest.raises(
        OptionError, match=r"'unet3p' has no pretrained encoder.*unet-r18, unet-r34"
    ):
        build_model("unet3p", encoder_weights=path)
    with pytest.raises(EncoderWeightsError, match="UNet has no ResNet encoder"):
        load_encoder_weights(build_model("unet-tiny", base_channels=4), path)
