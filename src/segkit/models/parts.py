"""Small building blocks shared by U-Net and UNet++."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

UP_MODES = ("transpose", "bilinear")
PADDINGS = ("same", "valid")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def check_architecture(
    in_channels: object, num_classes: object, base_channels: object, depth: object, up_mode: str
) -> None:
    """The constructor checks U-Net and UNet++ share (``ValueError`` naming the argument)."""
    for name, value in (
        ("in_channels", in_channels),
        ("num_classes", num_classes),
        ("base_channels", base_channels),
        ("depth", depth),
    ):
        check_positive_int(name, value)
    check_choice("up_mode", up_mode, UP_MODES)


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions, each followed by optional BatchNorm and ReLU.

    ``padding="valid"`` drops 2 pixels per convolution (4 per block), as in the
    U-Net paper; ``"same"`` keeps the size.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, batch_norm: bool = True, padding: str = "same"
    ) -> None:
        check_choice("padding", padding, PADDINGS)
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for channels_in in (in_channels, out_channels):
            # A bias right before BatchNorm is cancelled by its mean subtraction.
            layers.append(nn.Conv2d(channels_in, out_channels, 3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Upsample2x(nn.Module):
    """Double the spatial size and map ``in_channels`` to ``out_channels``.

    ``"transpose"`` is the paper's 2×2 up-convolution; ``"bilinear"`` interpolates and
    then applies a 1×1 convolution, which avoids checkerboard artefacts and has fewer
    parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, *, mode: str = "transpose") -> None:
        super().__init__()
        check_choice("up_mode", mode, UP_MODES)
        self.mode = mode
        if mode == "transpose":
            self.conv: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.conv(x)


def center_crop(x: Tensor, height: int, width: int) -> Tensor:
    """Crop the centre ``height × width`` window of an NCHW tensor (the paper's skip crop)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the bottom and right of an NCHW tensor so H and W are multiples of ``multiple``.

    Replicate padding works for any size (reflect needs the pad to be smaller than the
    image) and gives the border convolutions plausible context instead of a black frame.
    The pad is always applied, even when it is zero, so a traced or exported graph keeps
    working for every input size rather than only the size it was traced with.
    """
    # Written as round-up-then-subtract so torch.export's symbolic shapes can prove the
    # padded size divisible by ``multiple`` (needed for dynamic height and width).
    pad_h = (x.shape[-2] + multiple - 1) // multiple * multiple - x.shape[-2]
    pad_w = (x.shape[-1] + multiple - 1) // multiple * multiple - x.shape[-1]
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def crop_top_left(x: Tensor, height: int, width: int) -> Tensor:
    """Keep the top-left ``height × width`` window of an NCHW tensor (undoes ``pad_to_multiple``).

    A negative pad rather than slicing: ``torch.export`` cannot prove a slice bound
    against the rounded-up size, but accepts the pad, so dynamic shapes keep working.
    """
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]))


def init_weights(module: nn.Module) -> None:
    """He-normal initialisation for convolutions, as the U-Net paper recommends.

    PyTorch's default init is tuned for other activations; without BatchNorm (the
    paper's configuration) it leaves deep ReLU stacks with shrinking activations.
    """
    for layer in module.modules():
        if isinstance(layer, nn.ConvTranspose2d):
            # torch's fan-in for a transposed weight is out·k², but with kernel == stride
            # each output pixel sees exactly one tap per input channel: fan-in = in.
            taps = layer.in_channels * max(1, layer.kernel_size[0] // layer.stride[0]) ** 2
            nn.init.normal_(layer.weight, std=(2.0 / taps) ** 0.5)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (elements) in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
