"""Report pictures drawn with matplotlib (Agg backend, no display needed): PNG bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from segkit.report.tables import class_name, normalized_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Error-map colours: correct, wrong, ignored (not scored).
_CORRECT = (0, 0, 0)
_WRONG = (230, 40, 40)
_IGNORED = (150, 150, 150)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    # A bare Figure renders through Agg without pyplot's global state or a display.
    return Figure(figsize=(width, height), dpi=100)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def confusion_png(matrix: NDArray[np.integer], names: Sequence[str]) -> bytes:
    """Row-normalised confusion matrix heat map with class names (rows: ground truth)."""
    norm = normalized_rows(matrix)
    k = len(norm)
    labels = [class_name(names, i) for i in range(k)]
    size = min(4 + 0.45 * k, 30)
    fig = _figure(size, size * 0.85)
    ax = fig.add_subplot()
    image = ax.imshow(np.nan_to_num(norm), vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the class's pixels")
    ax.set_xticks(range(k), labels, rotation=60, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (row-normalised)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if not np.isnan(norm[i, j]) and norm[i, j] >= 0.005:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color
                    )
    return _png(fig)


def colorize(mask: NDArray[np.integer], colors: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """An RGB picture of a class mask: ``colors[id]`` per pixel (a 256-entry table)."""
    return colors[np.clip(mask, 0, len(colors) - 1)]


def error_map(
    target: NDArray[np.integer], prediction: NDArray[np.integer], ignore_index: int | None
) -> NDArray[np.uint8]:
    """RGB: black where right, red where wrong, grey where the ground truth is ignored."""
    out = np.zeros((*target.shape, 3), np.uint8)
    out[target != prediction] = _WRONG
    if ignore_index is not None:
        out[target == ignore_index] = _IGNORED
    return out


def overlay_png(
    image: NDArray[np.uint8],
    target: NDArray[np.integer],
    prediction: NDArray[np.integer],
    colors: NDArray[np.uint8],
    *,
    title: str,
    ignore_index: int | None = 255,
) -> bytes:
    """One row of four panels: image | ground truth | prediction | error map."""
    panels = [
        ("image", image),
        ("ground truth", colorize(target, colors)),
        ("prediction", colorize(prediction, colors)),
        ("errors (red), ignored (grey)", error_map(target, prediction, ignore_index)),
    ]
    height, width = target.shape
    scale = 3.0 / max(height, width)
    fig = _figure(4 * width * scale + 0.5, height * scale + 0.6)
    fig.suptitle(title, fontsize=9)
    for index, (name, picture) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 4, index)
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    return _png(fig)
