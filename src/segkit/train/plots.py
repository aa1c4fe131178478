"""The run folder's pictures: learning curves and the final confusion matrix (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from segkit._io import atomic_write_with


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [
        (row["epoch"], row[key])
        for row in rows
        if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
    ]
    return [p[0] for p in points], [p[1] for p in points]


def save_curves(path: Path, rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> None:
    """Loss (train, val), val mIoU and per-class val IoU per epoch, in one PNG."""
    plt = _pyplot()
    figure, (loss_axes, score_axes) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for key in ("train_loss", "val_loss"):
        loss_axes.plot(*_series(rows, key), marker=".", label=key.replace("_", " "))
    loss_axes.set(xlabel="epoch", ylabel="loss per image", title="loss")
    loss_axes.legend()
    score_axes.plot(*_series(rows, "mIoU"), marker="o", linewidth=2.5, color="black", label="mIoU")
    for name in classes:
        score_axes.plot(*_series(rows, f"IoU/{name}"), linewidth=1, label=f"IoU {name}")
    score_axes.set(xlabel="epoch", ylabel="val IoU", ylim=(0, 1), title="validation")
    score_axes.legend(fontsize="small", ncol=2 if len(classes) > 8 else 1)
    atomic_write_with(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)


def save_confusion(path: Path, matrix: NDArray[np.integer], classes: Sequence[str]) -> None:
    """Row-normalised confusion matrix (rows = truth) with the raw counts written in."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = max(4.0, 0.6 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(side + 1, side), layout="constrained")
    image = axes.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    ticks = range(len(classes))
    axes.set_xticks(ticks, classes, rotation=45, ha="right")
    axes.set_yticks(ticks, classes)
    axes.set(xlabel="predicted", ylabel="ground truth", title="confusion (row-normalised)")
    if len(classes) <= 20:
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if shares[row, col] > 0.5 else "black"
            axes.text(col, row, f"{count:,}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes)
    atomic_write_with(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)
