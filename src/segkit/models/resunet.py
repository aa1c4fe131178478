"""U-Net with a ResNet-18/34 encoder (BasicBlocks, 7×7/2 stem + max-pool), as in SMP's ``Unet``.

The encoder's module names follow torchvision's ``ResNet`` (``conv1``, ``bn1``,
``layer1.0.conv1`` …), so ImageNet weights in torchvision's key layout load into
``model.encoder`` unchanged (see :mod:`segkit.models.encoder_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkit.models.parts import (
    ConvBlock,
    check_positive_int,
    crop_top_left,
    init_weights,
    pad_to_multiple,
)

RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET34_BLOCKS = (3, 4, 6, 3)
DECODER_CHANNELS = (256, 128, 64, 32, 16)
#: Stem stride 2, max-pool 2, then layer2..layer4 each halve: 2**5 in all.
RESNET_DEPTH = 5


class BasicBlock(nn.Module):
    """ResNet's two-3×3-convolution residual block (torchvision's names and layout)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNetEncoder(nn.Module):
    """ResNet-18/34 feature extractor without the classifier.

    ``forward`` returns the five feature maps the decoder joins: the stem (stride 2,
    ``width`` channels), then ``layer1`` … ``layer4`` (strides 4, 8, 16, 32; ``width``
    × 1, 2, 4, 8 channels). ``width=64`` is torchvision's ResNet.
    """

    def __init__(
        self, in_channels: int = 3, *, blocks: Sequence[int] = RESNET34_BLOCKS, width: int = 64
    ) -> None:
        super().__init__()
        blocks = tuple(blocks)
        if len(blocks) != 4:
            raise ValueError(f"blocks must give 4 stage lengths; got {list(blocks)}")
        for count in blocks:
            check_positive_int("blocks", count)
        check_positive_int("width", width)
        self.in_channels = in_channels
        self.blocks = blocks
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.channels = [width] + [width * 2**stage for stage in range(4)]
        stages = []
        channels = width
        for stage, count in enumerate(blocks):
            out = width * 2**stage
            stride = 1 if stage == 0 else 2
            layers = [BasicBlock(channels, out, stride)]
            layers += [BasicBlock(out, out) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # torchvision's ResNet initialisation, so training from scratch matches it.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [stem, f1, f2, f3, f4]


class ResUNet(nn.Module):
    """U-Net whose encoder is a ResNet (default ResNet-34), SMP ``Unet`` style.

    Decoder block ``i`` doubles the size (nearest neighbour), concatenates the encoder
    map of that stride (none for the last block, which restores full resolution) and
    applies two 3×3 conv-BN-ReLU; a 3×3 convolution gives the logits.

    Args:
        in_channels: image channels; pretrained weights adapt their first conv.
        num_classes: output logits per pixel.
        blocks: BasicBlocks per stage: ``(2, 2, 2, 2)`` ResNet-18, ``(3, 4, 6, 3)`` ResNet-34.
        width: encoder width of the stem and ``layer1`` (64 for ImageNet weights).
        decoder_channels: output channels of the five decoder blocks, deepest first.

    Any input size works: the image is padded to a multiple of 32 inside ``forward``
    and the logits are cropped back. ``forward(x[N, C, H, W]) -> logits[N, K, H, W]``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        *,
        blocks: Sequence[int] = RESNET34_BLOCKS,
        width: int = 64,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        decoder_channels = tuple(decoder_channels)
        if len(decoder_channels) != RESNET_DEPTH:
            raise ValueError(
                f"decoder_channels must give {RESNET_DEPTH} widths; got {list(decoder_channels)}"
            )
        for channels in decoder_channels:
            check_positive_int("decoder_channels", channels)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = RESNET_DEPTH
        self.encoder = ResNetEncoder(in_channels, blocks=blocks, width=width)
        # Skips for blocks 0..3 are layer3, layer2, layer1, stem; block 4 has none.
        skips = [*self.encoder.channels[3::-1], 0]
        sources = [self.encoder.channels[4], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            ConvBlock(source + skip, out)
            for source, skip, out in zip(sources, skips, decoder_channels, strict=True)
        )
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
        init_weights(self.decoder)
        init_weights(self.head)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, 1 << self.depth)
        features = self.encoder(x)
        x = features[4]
        for index, block in enumerate(self.decoder):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            if index < 4:
                x = torch.cat([x, features[3 - index]], dim=1)
            x = block(x)
        return crop_top_left(self.head(x), height, width)
