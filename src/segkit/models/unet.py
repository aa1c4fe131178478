"""U-Net (Ronneberger et al. 2015) with the paper's valid padding or size-preserving same padding."""

from __future__ import annotations

import numbers
from typing import Optional

import torch
from torch import Tensor, nn

from segkit.models.parts import (
    PADDINGS,
    ConvBlock,
    Upsample2x,
    center_crop,
    check_architecture,
    check_choice,
    check_positive_int,
    crop_top_left,
    init_weights,
    pad_to_multiple,
)

# Each 3×3 valid convolution removes one pixel per side; a block has two.
_BLOCK_LOSS = 4


def _check_depth(depth: int) -> None:
    check_positive_int("depth", depth)


def valid_output_size(input_size: int, depth: int = 4) -> int:
    """Output size of a valid-padding U-Net of ``depth`` poolings for one spatial axis.

    Raises ``ValueError`` (naming the nearest usable sizes) when a max-pool would see
    an odd size or a feature map would vanish.

    >>> valid_output_size(572)
    388
    """
    _check_depth(depth)
    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral):
        raise ValueError(f"input size must be an integer, got {input_size!r}")
    input_size = int(input_size)  # numpy integers too
    size = _simulate(input_size, depth)
    if size is None:
        below, above = _nearest_valid_inputs(input_size, depth)
        hint = (
            f"nearest valid sizes: {below}, {above}" if below else f"smallest valid size: {above}"
        )
        raise ValueError(
            f"input size {input_size} does not fit a valid-padding U-Net of depth {depth} "
            f"(every max-pool needs an even size); {hint}"
        )
    return size


def input_size_for_output(output_size: int, depth: int = 4) -> int:
    """Smallest valid input size whose valid-padding output is at least ``output_size``.

    The output for the returned input is ``valid_output_size(result)``, which equals
    ``output_size`` when that size is reachable (sizes step by ``2**depth``).

    >>> input_size_for_output(388)
    572
    """
    _check_depth(depth)
    check_positive_int("output_size", output_size)
    scale = 2**depth
    # Output = scale·b − 4·(scale − 1) for bottleneck output b, so b has a closed form.
    bottleneck = max(1, -(-(output_size + _BLOCK_LOSS * (scale - 1)) // scale))
    while True:
        size = bottleneck + _BLOCK_LOSS
        for _ in range(depth):
            size = 2 * size + _BLOCK_LOSS
        if _simulate(size, depth) is not None:
            return size
        bottleneck += 1


def _simulate(  # Optional, not "int | None": TorchScript reads the annotation
    size: int, depth: int, block_loss: int = _BLOCK_LOSS
) -> Optional[int]:  # noqa: UP045
    """Valid-padding output size, or ``None`` when ``size`` does not fit.

    Scriptable: TorchScript reads no module globals, hence ``block_loss`` as an argument.
    """
    for _ in range(depth):
        size -= block_loss
        if size <= 0 or size % 2:
            return None
        size = size // 2
    size -= block_loss
    if size <= 0:
        return None
    for _ in range(depth):
        size = 2 * size - block_loss
        if size <= 0:
            return None
    return size


def _nearest_valid_inputs(size: int, depth: int) -> tuple[int | None, int]:
    smallest = input_size_for_output(1, depth)
    step = 2**depth
    if size <= smallest:
        return None, smallest
    below = smallest + (size - smallest) // step * step
    return below, below + step


class UNet(nn.Module):
    """U-Net: per level two 3×3 convolutions (+ optional BatchNorm) and ReLU, 2×2 max-pool
    down, 2×2 up-convolution (or bilinear + 1×1) up, concatenated skips, 1×1 head.

    Args:
        in_channels: image channels (1 for grayscale microscopy, 3 for RGB).
        num_classes: output logits per pixel (1 for a binary sigmoid head).
        base_channels: width of the first level; doubled at each pooling (paper: 64).
        depth: number of poolings (paper: 4).
        batch_norm: BatchNorm after every convolution (not in the paper).
        up_mode: ``"transpose"`` (paper) or ``"bilinear"``.
        padding: ``"same"`` pads the input to a multiple of ``2**depth`` inside
            ``forward`` and crops the logits back, so output size == input size for any
            input; ``"valid"`` is the paper's unpadded network (572 → 388), see
            :func:`valid_output_size` and :func:`input_size_for_output`.

    ``forward(x[N, in_channels, H, W]) -> logits[N, num_classes, H', W']``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        *,
        base_channels: int = 64,
        depth: int = 4,
        batch_norm: bool = True,
        up_mode: str = "transpose",
        padding: str = "same",
    ) -> None:
        super().__init__()
        check_architecture(in_channels, num_classes, base_channels, depth, up_mode)
        check_choice("padding", padding, PADDINGS)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.padding = padding
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            ConvBlock(
                in_channels if level == 0 else widths[level - 1],
                widths[level],
                batch_norm=batch_norm,
                padding=padding,
            )
            for level in range(depth + 1)
        )
        self.pool = nn.MaxPool2d(2)
        levels = range(depth - 1, -1, -1)
        self.ups = nn.ModuleList(
            Upsample2x(widths[level + 1], widths[level], mode=up_mode) for level in levels
        )
        self.decoder = nn.ModuleList(
            ConvBlock(2 * widths[level], widths[level], batch_norm=batch_norm, padding=padding)
            for level in levels
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        init_weights(self)

    def output_size(self, input_size: int) -> int:
        """Output size along one axis for an input of ``input_size`` pixels."""
        if self.padding == "same":
            return input_size
        return valid_output_size(input_size, self.depth)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if self.padding == "same":
            x = pad_to_multiple(x, 1 << self.depth)
        else:
            fits = _simulate(int(height), self.depth) is not None
            if not fits or _simulate(int(width), self.depth) is None:
                if not torch.jit.is_scripting():
                    valid_output_size(int(height), self.depth)  # raises, naming valid sizes
                    valid_output_size(int(width), self.depth)
                raise ValueError("input size does not fit the valid-padding U-Net")
        skips: list[Tensor] = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.ups, self.decoder, strict=True):
            x = up(x)
            skip = center_crop(skips.pop(), x.shape[-2], x.shape[-1])
            x = block(torch.cat([skip, x], dim=1))
        logits = self.head(x)
        if self.padding == "same":
            logits = crop_top_left(logits, height, width)
        return logits
