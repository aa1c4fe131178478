"""UNet++ (Zhou et al. 2018): nested dense skips, deep supervision and inference-time pruning."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segkit.models.parts import (
    ConvBlock,
    Upsample2x,
    check_architecture,
    crop_top_left,
    init_weights,
    pad_to_multiple,
)


def _node(row: int, column: int) -> str:
    return f"x{row}_{column}"


class UNetPlusPlus(nn.Module):
    """UNet++ with nodes X(i, j): row i is the resolution level, column j the skip stage.

    X(i, 0) is the encoder; X(i, j) convolves the concatenation of X(i, 0..j-1) and the
    upsampled X(i+1, j-1). With ``deep_supervision=True`` a 1×1 head sits on every
    top-row node X(0, 1) … X(0, depth):

    * in **training** mode ``forward`` returns a **list** of logits, one per head, from
      the shallowest (level 1) to the current level; wrap the loss in
      :class:`segkit.losses.DeepSupervisionLoss` to average over them;
    * in **eval** mode ``forward`` returns the logits of one head, the one at the current
      level (``depth`` unless :meth:`prune` chose a shallower one).

    ``prune(level)`` makes the network stop at X(0, level): rows and columns deeper than
    ``level`` are never computed, which is the paper's speed/accuracy trade-off. Without
    deep supervision there is only the deepest head and pruning is refused.

    Inputs of any size work: the image is padded to a multiple of ``2**depth`` inside
    ``forward`` and the logits are cropped back.

    ``torch.jit.script`` compiles the model; prune before scripting (the scripted module
    keeps that level and has no ``prune``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        *,
        base_channels: int = 32,
        depth: int = 4,
        batch_norm: bool = True,
        up_mode: str = "transpose",
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        check_architecture(in_channels, num_classes, base_channels, depth, up_mode)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.deep_supervision = bool(deep_supervision)
        self.level = depth
        widths = [base_channels * 2**row for row in range(depth + 1)]
        # Nodes are inserted in computation order (encoder, then column by column), and
        # forward iterates them in that order: TorchScript can iterate a ModuleDict but
        # not index it with a computed key. ``_node_positions`` holds each node's (row, column).
        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        positions: list[tuple[int, int]] = []
        for row in range(depth + 1):
            source = in_channels if row == 0 else widths[row - 1]
            self.nodes[_node(row, 0)] = ConvBlock(source, widths[row], batch_norm=batch_norm)
            positions.append((row, 0))
        for column in range(1, depth + 1):
            for row in range(depth + 1 - column):
                key = _node(row, column)
                self.ups[key] = Upsample2x(widths[row + 1], widths[row], mode=up_mode)
                self.nodes[key] = ConvBlock(
                    widths[row] * (column + 1), widths[row], batch_norm=batch_norm
                )
                positions.append((row, column))
        self._node_positions = tuple(positions)
        head_levels = range(1, depth + 1) if self.deep_supervision else (depth,)
        self.heads = nn.ModuleDict(
            {str(level): nn.Conv2d(widths[0], num_classes, 1) for level in head_levels}
        )
        self.pool = nn.MaxPool2d(2)
        init_weights(self)

    def prune(self, level: int) -> UNetPlusPlus:
        """Use the head at ``level`` (1 … depth) and skip every deeper node; returns self."""
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= self.depth:
            raise ValueError(f"pruning level must be an integer in 1..{self.depth}; got {level!r}")
        if not self.deep_supervision and level != self.depth:
            raise ValueError(
                "pruning needs a model built with deep_supervision=True "
                "(only the deepest head exists otherwise)"
            )
        self.level = level
        return self

    def modules_for_level(self, level: int | None = None) -> list[nn.Module]:
        """The submodules the forward pass at ``level`` (default: current) runs."""
        level = self.level if level is None else level
        used: list[nn.Module] = [self.heads[str(level)]]
        for row in range(level + 1):
            used.append(self.nodes[_node(row, 0)])
        for column in range(1, level + 1):
            for row in range(level + 1 - column):
                used += [self.nodes[_node(row, column)], self.ups[_node(row, column)]]
        return used

    def num_parameters(self, level: int | None = None) -> int:
        """Parameters the network pruned to ``level`` (default: current) actually uses."""
        return sum(p.numel() for m in self.modules_for_level(level) for p in m.parameters())

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        height, width = x.shape[-2], x.shape[-1]
        x = pad_to_multiple(x, 1 << self.depth)
        level = self.level
        # grid[row][column] holds X(row, column); only nodes with row + column <= level.
        grid: list[list[Tensor]] = []
        for (row, column), (key, node) in zip(
            self._node_positions, self.nodes.items(), strict=True
        ):
            # Deeper nodes are pruned away, never computed. (An ``if``, not ``continue``:
            # TorchScript unrolls loops over modules and refuses ``continue`` in them.)
            if row + column <= level:
                if column == 0:
                    if row > 0:
                        x = self.pool(x)
                    x = node(x)
                    grid.append([x])
                else:
                    upsampled = self._upsample(key, grid[row + 1][column - 1])
                    grid[row].append(node(torch.cat(grid[row] + [upsampled], dim=1)))
        if self.training and self.deep_supervision:
            outputs: list[Tensor] = []
            for key, head in self.heads.items():
                column = int(key)
                if column <= level:
                    outputs.append(crop_top_left(head(grid[0][column]), height, width))
            return outputs
        return crop_top_left(self._head(str(level), grid[0][level]), height, width)

    def _upsample(self, key: str, x: Tensor) -> Tensor:
        """``self.ups[key](x)``, written as a scan because TorchScript needs literal keys."""
        for name, up in self.ups.items():
            if name == key:
                return up(x)
        raise KeyError("UNet++ has no upsampling for node " + key)

    def _head(self, key: str, x: Tensor) -> Tensor:
        """``self.heads[key](x)``, written as a scan because TorchScript needs literal keys."""
        for name, head in self.heads.items():
            if name == key:
                return head(x)
        raise KeyError("UNet++ has no head at level " + key)
