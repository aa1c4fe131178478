"""UNet 3+ (Huang et al. 2020): full-scale skip connections, deep supervision, optional CGM."""

from __future__ import annotations

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

#: Poolings of the paper's encoder (five levels: widths 64, 128, 256, 512, 1024).
UNET3P_DEPTH = 4


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _resample(source: int, target: int) -> list[nn.Module]:
    """Bring a map of level ``source`` to level ``target`` (level ``l`` has stride 2**l)."""
    if source < target:
        scale = 2 ** (target - source)
        return [nn.MaxPool2d(scale, scale, ceil_mode=True)]
    if source > target:
        return [nn.Upsample(scale_factor=float(2 ** (source - target)), mode="bilinear")]
    return []


class UNet3Plus(nn.Module):
    """UNet 3+: every decoder node sees every scale.

    Levels 0 … ``depth`` have strides 1 … 2**depth; the encoder is the U-Net's (two 3×3
    conv-BN-ReLU per level, max-pool down, widths ``base_channels · 2**level``). The
    decoder node at level ``l < depth`` takes every encoder map of level ≤ ``l``
    (max-pooled down) and every decoder node of level > ``l`` (bilinear-upsampled; the
    deepest "decoder node" is the bottleneck), passes each through a 3×3 conv-BN-ReLU to
    ``cat_channels``, and fuses the ``(depth + 1) · cat_channels`` channels (paper: 5 ×
    64 = 320) with one 3×3 conv-BN-ReLU of that width.

    Deep supervision (default): a 3×3 convolution head on every decoder node, bilinear-
    upsampled to full size. In **training** mode ``forward`` returns the list of logits
    from the deepest node (the bottleneck) to the finest, the last being the main
    output; :class:`segkit.losses.DeepSupervisionLoss` averages them. In **eval** mode
    (or without deep supervision) it returns the finest node's logits only.

    ``classification_guided=True`` adds the paper's classification-guided module: from
    the bottleneck, dropout → 1×1 conv → global max-pool gives one presence logit per
    class. Rather than the paper's hard 0/1 multiplication (which needs its own
    classification loss), ``log σ(presence)`` is added to the logits of every foreground
    class (class 0 is left alone when there are several), so a class judged absent from
    the image is suppressed everywhere and the segmentation loss trains the branch.

    Inputs of any size work: padded to a multiple of ``2**depth`` and cropped back.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        *,
        base_channels: int = 64,
        cat_channels: int = 64,
        depth: int = UNET3P_DEPTH,
        deep_supervision: bool = True,
        classification_guided: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_channels", base_channels),
            ("cat_channels", cat_channels),
            ("depth", depth),
        ):
            check_positive_int(name, value)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.deep_supervision = bool(deep_supervision)
        self.classification_guided = bool(classification_guided)
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.fused_channels = (depth + 1) * cat_channels
        self.encoder = nn.ModuleList(
            ConvBlock(in_channels if level == 0 else widths[level - 1], widths[level])
            for level in range(depth + 1)
        )
        self.pool = nn.MaxPool2d(2)
        # branches[i] and fuse[i] build level depth-1-i (deepest first); branches[i][k] reads
        # level k.
        decoder_levels = range(depth - 1, -1, -1)
        self.branches = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for level in decoder_levels:
            node_branches = nn.ModuleList()
            for source in range(depth + 1):
                # Finer levels and the bottleneck are encoder maps; the rest decoder nodes.
                is_encoder = source <= level or source == depth
                channels = widths[source] if is_encoder else self.fused_channels
                node_branches.append(
                    nn.Sequential(*_resample(source, level), *_conv_bn_relu(channels, cat_channels))
                )
            self.branches.append(node_branches)
            self.fuse.append(
                nn.Sequential(*_conv_bn_relu(self.fused_channels, self.fused_channels))
            )
        # heads[i] sits on level depth-i: the bottleneck first, the finest node last.
        head_levels = range(depth, -1, -1) if self.deep_supervision else (0,)
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(
                    widths[depth] if level == depth else self.fused_channels,
                    num_classes,
                    3,
                    padding=1,
                ),
                *_resample(level, 0),
            )
            for level in head_levels
        )
        self.classifier: nn.Module = nn.Identity()
        if self.classification_guided:
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Conv2d(widths[depth], num_classes, 1), nn.AdaptiveMaxPool2d(1)
            )
        # Which logits the guidance touches: every class, or all but the background.
        gated = torch.ones(1, num_classes, 1, 1)
        if num_classes > 1:
            gated[:, 0] = 0.0
        self.register_buffer("gated_classes", gated, persistent=False)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        height, width = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, 1 << self.depth)
        # maps[k]: encoder level k until the decoder node of level k replaces it.
        maps: list[Tensor] = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            maps.append(x)
        for index, (branches, fuse) in enumerate(zip(self.branches, self.fuse, strict=True)):
            gathered: list[Tensor] = []
            for source, branch in enumerate(branches):
                gathered.append(branch(maps[source]))
            maps[self.depth - 1 - index] = fuse(torch.cat(gathered, dim=1))
        guide = torch.zeros(1)
        if self.classification_guided:
            guide = F.logsigmoid(self.classifier(maps[self.depth])) * self.gated_classes
        outputs: list[Tensor] = []
        for index, head in enumerate(self.heads):
            level = self.depth - index if self.deep_supervision else 0
            if self.training or level == 0:
                logits = head(maps[level])
                if self.classification_guided:
                    logits = logits + guide
                outputs.append(crop_top_left(logits, height, width))
        if self.training and self.deep_supervision:
            return outputs
        return outputs[-1]
