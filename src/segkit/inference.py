"""Whole-image or tiled prediction, shared by train's validation, ``report`` and ``predict``.

A sliding window of tiles (the last tile of a row or column is shifted back inside the
image, as in MMSegmentation's ``slide_inference``) whose class probabilities are summed
with Gaussian weights so tile borders count less (nnU-Net), then divided by the summed
weights. Tiles run in batches, in row-major order, and the sums live in a band of tile
rows only: rows no later tile touches are divided out and handed on as a stripe
(:func:`predict_stripes`), so memory grows with the tile, the batch and the image width,
not with the image's area. Each tile is cut from the image as given (decoded uint8
pixels too, normalised one tile at a time); no padded or float copy of the image is made.

Borders are mirror-padded (the U-Net paper's overlap-tile strategy), per tile through
:func:`reflect_index`: a valid-padding network (``unet-valid``) sees the context its
output needs around every tile, sized with the model's own
:func:`~segkit.models.unet.valid_output_size` helpers, and any model gets an image
smaller than its tile mirrored up to the tile size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from segkit.errors import OptionError
from segkit.models.unet import input_size_for_output, valid_output_size


@dataclass(frozen=True)
class InferenceOptions:
    """How to predict: ``tile`` None = the whole image at once, else square output tiles
    of that many pixels overlapping by ``overlap`` (a fraction), ``batch_size`` tiles per
    forward pass, ``flip_tta`` also averages horizontally and vertically flipped passes,
    ``blend`` weights tiles ``"gaussian"`` or ``"uniform"``."""

    tile: int | None = None
    overlap: float = 0.25
    batch_size: int = 4
    flip_tta: bool = False
    blend: str = "gaussian"

    def __post_init__(self) -> None:
        if self.tile is not None and (
            isinstance(self.tile, bool) or not isinstance(self.tile, int) or self.tile < 1
        ):
            raise OptionError(f"tile must be a positive number of pixels, got {self.tile!r}")
        if not 0 <= self.overlap < 1:
            raise OptionError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise OptionError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise OptionError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.blend not in ("gaussian", "uniform"):
            raise OptionError(f"blend must be 'gaussian' or 'uniform', got {self.blend!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "tile": self.tile,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "flip_tta": self.flip_tta,
            "blend": self.blend,
        }


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles covering ``0..length``; the last one ends exactly at ``length``.

    >>> tile_starts(10, 4, 3)
    [0, 3, 6]
    >>> tile_starts(11, 4, 3)
    [0, 3, 6, 7]
    >>> tile_starts(3, 4, 3)
    [0]
    """
    if tile < 1 or stride < 1:
        raise ValueError("tile and stride must be positive")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def gaussian_weights(height: int, width: int, sigma_scale: float = 1 / 8) -> Tensor:
    """A ``height × width`` Gaussian importance map (peak 1 at the centre, σ = size/8),
    floored at its smallest positive value so no pixel of a tile gets weight 0."""

    def axis(n: int) -> Tensor:
        sigma = max(n * sigma_scale, 1e-3)
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        return torch.exp(-(x**2) / (2 * sigma**2))

    weights = axis(height)[:, None] * axis(width)[None, :]
    weights = weights / weights.max()
    floor = weights[weights > 0].min()
    return torch.clamp(weights, min=float(floor)).float()


def mirror_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Reflect-pad the last two axes of a float ``[C, H, W]`` or ``[N, C, H, W]`` tensor
    by any amount: a pad wider than the image continues the reflections (as numpy's
    ``"reflect"``); an axis of one pixel is repeated."""
    squeeze = x.ndim == 3
    batch = x[None] if squeeze else x
    for before, after, axis in ((top, bottom, -2), (left, right, -1)):
        size = batch.shape[axis]
        # Steps of at most size - 1 keep every new edge on a mirror axis of the image.
        step = max(size - 1, 1)
        mode = "reflect" if size > 1 else "replicate"
        while before or after:
            b, a = (before, after) if size == 1 else (min(before, step), min(after, step))
            pads = (0, 0, b, a) if axis == -2 else (b, a, 0, 0)
            batch = F.pad(batch, pads, mode=mode)
            before, after = before - b, after - a
    return batch[0] if squeeze else batch


@dataclass(frozen=True)
class TileGeometry:
    """Sizes for one image: output tile, input tile (≥ output for valid padding), the
    margin the input adds on each side, and the canvas the tiles cover."""

    out_h: int
    out_w: int
    in_h: int
    in_w: int
    margin_h: int
    margin_w: int
    canvas_h: int
    canvas_w: int
    align: int = 1


def _valid_depth(model: nn.Module) -> int | None:
    """The depth of a valid-padding U-Net, None for size-preserving models."""
    if getattr(model, "padding", "same") == "valid":
        return int(model.depth)
    return None


def tile_geometry(
    height: int, width: int, tile: int | None, valid_depth: int | None = None
) -> TileGeometry:
    """Tile sizes for a ``height × width`` image (pure; ``valid_depth`` for unet-valid).

    For a valid-padding network every tile starts at a multiple of ``2**depth`` (the
    canvas grows to allow it), so each tile sees the max-pool grid of the whole image
    and tiled predictions equal whole-image ones.

    >>> g = tile_geometry(100, 60, None, valid_depth=4)
    >>> (g.out_h, g.in_h, g.margin_h, g.canvas_h, g.canvas_w)
    (100, 284, 92, 100, 68)
    """
    want_h = height if tile is None else min(tile, height)
    want_w = width if tile is None else min(tile, width)
    if valid_depth is None:
        out_h, out_w, in_h, in_w = want_h, want_w, want_h, want_w
    else:
        in_h = input_size_for_output(want_h, valid_depth)
        in_w = input_size_for_output(want_w, valid_depth)
        out_h = valid_output_size(in_h, valid_depth)
        out_w = valid_output_size(in_w, valid_depth)
    align = 1 if valid_depth is None else 2**valid_depth
    return TileGeometry(
        out_h,
        out_w,
        in_h,
        in_w,
        (in_h - out_h) // 2,
        (in_w - out_w) // 2,
        out_h + -(-max(0, height - out_h) // align) * align,
        out_w + -(-max(0, width - out_w) // align) * align,
        align,
    )


def tile_stride(out: int, overlap: float, align: int = 1) -> int:
    """Step between tiles of ``out`` pixels overlapping by ``overlap``: a multiple of
    ``align``, at least ``align``."""
    return max(align, int(out * (1 - overlap)) // align * align)


def tile_grid(geo: TileGeometry, overlap: float) -> list[tuple[int, int]]:
    """Canvas ``(y, x)`` of every output tile, in row-major order.

    >>> tile_grid(tile_geometry(10, 7, 4), 0.25)
    [(0, 0), (0, 3), (3, 0), (3, 3), (6, 0), (6, 3)]
    """
    stride_h = tile_stride(geo.out_h, overlap, geo.align)
    stride_w = tile_stride(geo.out_w, overlap, geo.align)
    return [
        (y, x)
        for y in tile_starts(geo.canvas_h, geo.out_h, stride_h)
        for x in tile_starts(geo.canvas_w, geo.out_w, stride_w)
    ]


def _forward(model: nn.Module, batch: Tensor, flip_tta: bool) -> Tensor:
    """Class probabilities ``[N, K, h, w]`` (sigmoid for a single-logit head)."""

    def once(x: Tensor) -> Tensor:
        out = model(x)
        if isinstance(out, (list, tuple)):  # deep supervision: the last head is the output
            out = out[-1]
        out = out.float()
        return torch.sigmoid(out) if out.shape[1] == 1 else torch.softmax(out, dim=1)

    probs = once(batch)
    if flip_tta:
        for dims in ((-1,), (-2,)):
            probs = probs + once(batch.flip(dims)).flip(dims)
        probs = probs / 3
    return probs


def reflect_index(start: int, stop: int, size: int) -> NDArray[np.intp]:
    """Source indices of positions ``start..stop`` on an axis of ``size`` pixels that
    mirror padding extends both ways (numpy's ``"reflect"``, any width; a one-pixel axis
    repeats): the per-tile equivalent of :func:`mirror_pad`.

    >>> reflect_index(-3, 7, 4).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    positions = np.arange(start, stop, dtype=np.intp)
    if size == 1:
        return np.zeros_like(positions)
    period = 2 * (size - 1)
    folded = np.mod(positions, period)
    return np.where(folded < size, folded, period - folded)


def _as_slice(index: NDArray[np.intp]) -> slice | NDArray[np.intp]:
    """A slice where the indices are one increasing run (interior tiles), else them."""
    if len(index) and index[-1] - index[0] == len(index) - 1:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _index(index: NDArray[np.intp], device: torch.device) -> slice | Tensor:
    where = _as_slice(index)
    return where if isinstance(where, slice) else torch.from_numpy(where).to(device)


Crop = Callable[[NDArray[np.intp], NDArray[np.intp]], Tensor]


def _cropper(
    image: Tensor | NDArray[Any], normalization: dict[str, Any] | None, device: torch.device
) -> tuple[int, int, Crop]:
    """Height, width and a function giving the float32 ``[C, h, w]`` crop at row and
    column indices, on ``device``: from a normalised ``[C, H, W]`` tensor, or from
    decoded ``[H, W(, C)]`` pixels normalised one crop at a time (the same arithmetic
    :func:`image_to_tensor` does on the whole image, so the values are identical)."""
    if isinstance(image, Tensor):
        if image.ndim != 3:
            raise ValueError(f"image must be [C, H, W], got shape {tuple(image.shape)}")

        def crop_tensor(rows: NDArray[np.intp], cols: NDArray[np.intp]) -> Tensor:
            part = image[:, _index(rows, image.device)][:, :, _index(cols, image.device)]
            return part.to(device).float()

        return int(image.shape[-2]), int(image.shape[-1]), crop_tensor
    pixels = np.asarray(image)
    if pixels.ndim not in (2, 3):
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {pixels.shape}")

    def crop_pixels(rows: NDArray[np.intp], cols: NDArray[np.intp]) -> Tensor:
        part = pixels[_as_slice(rows)][:, _as_slice(cols)]
        return image_to_tensor(part, normalization).to(device)

    return int(pixels.shape[0]), int(pixels.shape[1]), crop_pixels


Stripe = Callable[[int, Tensor], None]
#: About how many pixels one stripe handed to ``on_stripe`` holds (whole rows, at least one).
STRIPE_PIXELS = 1 << 18


def _batch_plan(
    starts: list[tuple[int, int]], batch_size: int, canvas_h: int
) -> list[tuple[int, list[tuple[int, int]], int]]:
    """Batches of tile starts in row-major order, each with the first canvas row not yet
    final before it (the band's top) and the row above which all is final after it."""
    plan = []
    top = 0
    for first in range(0, len(starts), batch_size):
        following = first + batch_size
        next_top = starts[following][0] if following < len(starts) else canvas_h
        plan.append((top, starts[first:following], next_top))
        top = next_top
    return plan


def _shift_rows(buffer: Tensor, shift: int) -> None:
    """Move rows ``shift..`` of ``buffer`` (its second-last axis) to the top, in place,
    and zero the rows freed below; blocks of at most ``shift`` rows never overlap."""
    if shift <= 0:
        return
    rows = buffer.shape[-2]
    for top in range(0, rows - shift, shift):
        count = min(shift, rows - shift - top)
        buffer[..., top : top + count, :] = buffer[..., top + shift : top + shift + count, :]
    buffer[..., max(rows - shift, 0) :, :] = 0


def _one_tile_is_the_image(
    geo: TileGeometry, starts: list[tuple[int, int]], height: int, width: int
) -> bool:
    """Whether the image is one tile without padding: then no blending is needed (its
    weights would all be 1, so the probabilities are the same to the bit) and no band."""
    return len(starts) == 1 and (geo.in_h, geo.in_w, geo.out_h, geo.out_w) == (
        height, width, height, width,
    )  # fmt: skip


def predict_stripes(
    model: nn.Module,
    image: Tensor | NDArray[Any],
    options: InferenceOptions | None,
    on_stripe: Stripe,
    *,
    normalization: dict[str, Any] | None = None,
) -> None:
    """Predict one image and hand its class probabilities to ``on_stripe(top, probs)``
    in row stripes, top to bottom: ``probs`` is float32 ``[K, rows, W]`` (on the model's
    device) for image rows ``top..top + rows``; together the stripes cover every row once.

    ``image`` is a normalised ``[C, H, W]`` tensor, or decoded pixels ``[H, W]`` or
    ``[H, W, C]`` (uint8, uint16 or float, as :func:`image_to_tensor` takes them, with
    ``normalization``) that are scaled and mirror-padded one tile at a time.

    Tiles run in row-major order, so a row is final once the next tile starts below it:
    only that band (at most a tile plus a stride of rows) is held, and besides it and the
    batch's activations memory holds what ``on_stripe`` keeps. The model runs in eval
    mode under ``torch.inference_mode`` (its previous mode is restored); a single-logit
    head gives ``[1, rows, W]`` foreground probabilities.
    """
    options = options or InferenceOptions()
    device = next(model.parameters()).device
    height, width, crop = _cropper(image, normalization, device)
    geo = tile_geometry(height, width, options.tile, _valid_depth(model))
    starts = tile_grid(geo, options.overlap)
    if options.blend == "gaussian" and len(starts) > 1:
        weight = gaussian_weights(geo.out_h, geo.out_w).to(device)
    else:
        weight = torch.ones(geo.out_h, geo.out_w, device=device)
    cols = {
        x: reflect_index(x - geo.margin_w, x - geo.margin_w + geo.in_w, width)
        for x in {x for _, x in starts}
    }
    plan = _batch_plan(starts, options.batch_size, geo.canvas_h)
    band_rows = max(group[-1][0] + geo.out_h - top for top, group, _ in plan)
    # The band: canvas rows band_top.. of the blended sum and of the summed weights,
    # allocated once (the most rows a batch spans below the last final row).
    band: Tensor | None = None
    total = torch.zeros(band_rows, geo.canvas_w, device=device)
    done = 0
    whole = _one_tile_is_the_image(geo, starts, height, width)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if whole:
                rows, cols_all = np.arange(height, dtype=np.intp), np.arange(width, dtype=np.intp)
                probs = _forward(model, crop(rows, cols_all)[None], options.flip_tta)[0]
                step = max(1, STRIPE_PIXELS // width)
                for top in range(0, height, step):
                    on_stripe(top, probs[:, top : top + step])
                return
            for band_top, group, next_top in plan:
                crops = torch.stack(
                    [
                        crop(
                            reflect_index(y - geo.margin_h, y - geo.margin_h + geo.in_h, height),
                            cols[x],
                        )
                        for y, x in group
                    ]
                )
                probs = _forward(model, crops, options.flip_tta)
                del crops
                if band is None:
                    band = torch.zeros(probs.shape[1], band_rows, geo.canvas_w, device=device)
                for (y, x), tile_probs in zip(group, probs, strict=True):
                    rows = slice(y - band_top, y - band_top + geo.out_h)
                    band[:, rows, x : x + geo.out_w] += tile_probs * weight
                    total[rows, x : x + geo.out_w] += weight
                del probs
                # Every later tile starts at or below next_top: the rows above are final.
                # Handed on in stripes of about STRIPE_PIXELS, so what the caller derives
                # from one (argmax, entropy, float16) stays small next to the band.
                finish = min(next_top, height)
                step = max(1, STRIPE_PIXELS // width)
                for top in range(done, finish, step):
                    rows = slice(top - band_top, min(top + step, finish) - band_top)
                    on_stripe(top, band[:, rows, :width] / total[rows, :width])
                done = max(done, finish)
                if next_top < geo.canvas_h:
                    _shift_rows(band, next_top - band_top)
                    _shift_rows(total, next_top - band_top)
    finally:
        model.train(was_training)


def predict_probabilities(
    model: nn.Module,
    image: Tensor | NDArray[Any],
    options: InferenceOptions | None = None,
    *,
    normalization: dict[str, Any] | None = None,
) -> Tensor:
    """Class probabilities ``[K, H, W]`` (float32, on the model's device) for one
    normalised image ``[C, H, W]`` (or decoded pixels, see :func:`predict_stripes`).

    Holds the ``K × H × W`` result: for large images, consume
    :func:`predict_stripes` or take :func:`predict_mask`.
    """
    result: list[Tensor] = []

    def keep(top: int, probs: Tensor) -> None:
        if not result:
            result.append(probs.new_empty(probs.shape[0], _height(image), probs.shape[2]))
        result[0][:, top : top + probs.shape[1]] = probs

    predict_stripes(model, image, options, keep, normalization=normalization)
    return result[0]


def _height(image: Tensor | NDArray[Any]) -> int:
    return int(image.shape[-2]) if isinstance(image, Tensor) else int(np.shape(image)[0])


def predict_batch(
    model: nn.Module, images: Tensor, options: InferenceOptions | None = None
) -> Tensor:
    """Class probabilities ``[N, K, H, W]`` for a batch of normalised images
    ``[N, C, H, W]`` (a validation batch).

    Whole-image prediction with a size-preserving model runs ``batch_size`` images per
    forward pass; tiles and valid-padding models go image by image through
    :func:`predict_probabilities`. The results are the same either way.
    """
    options = options or InferenceOptions()
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    if options.tile is not None or _valid_depth(model) is not None:
        return torch.stack([predict_probabilities(model, image, options) for image in images])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return torch.cat(
                [
                    _forward(
                        model,
                        images[start : start + options.batch_size].to(device).float(),
                        options.flip_tta,
                    )
                    for start in range(0, images.shape[0], options.batch_size)
                ]
            )
    finally:
        model.train(was_training)


def probabilities_to_mask(probs: Tensor) -> Tensor:
    """Class ids ``[H, W]`` (uint8 when K ≤ 256) from ``[K, H, W]`` probabilities, or
    ``[N, H, W]`` from ``[N, K, H, W]``."""
    channel = probs.ndim - 3
    if probs.shape[channel] == 1:  # a sigmoid head: foreground where its probability > 0.5
        return (probs.select(channel, 0) > 0.5).to(torch.uint8)
    return class_argmax(probs, channel)


def class_argmax(probs: Tensor, dim: int = 0) -> Tensor:
    """The index of the largest value along ``dim`` (the first of equal ones, as
    :func:`torch.argmax`), uint8 for up to 256 classes, else int64.

    One comparison pass per class: on the CPU several times faster than ``argmax`` over
    a leading axis, which reduces across strided memory.

    >>> class_argmax(torch.tensor([[0.2, 0.5], [0.7, 0.5]])).tolist()
    [1, 0]
    """
    classes = probs.shape[dim]
    best = probs.select(dim, 0).clone()
    dtype = torch.uint8 if classes <= 256 else torch.int64
    index = torch.zeros(best.shape, dtype=dtype, device=probs.device)
    for k in range(1, classes):
        current = probs.select(dim, k)
        index.masked_fill_(current > best, k)
        torch.maximum(best, current, out=best)
    return index


def predict_mask(
    model: nn.Module,
    image: Tensor | NDArray[Any],
    options: InferenceOptions | None = None,
    *,
    normalization: dict[str, Any] | None = None,
) -> Tensor:
    """Class ids ``[H, W]`` (on the model's device) for one normalised image ``[C, H, W]``
    or decoded pixels (see :func:`predict_stripes`), never holding the image's
    probabilities: memory is the mask plus a band of tiles."""
    result: list[Tensor] = []

    def keep(top: int, probs: Tensor) -> None:
        stripe = probabilities_to_mask(probs)
        if not result:
            result.append(stripe.new_empty(_height(image), stripe.shape[1]))
        result[0][top : top + stripe.shape[0]] = stripe

    predict_stripes(model, image, options, keep, normalization=normalization)
    return result[0]


def image_to_tensor(image: NDArray[Any], normalization: dict[str, Any] | None = None) -> Tensor:
    """A decoded image ``[H, W]`` or ``[H, W, C]`` (uint8, uint16 or float) as a float32
    ``[C, H, W]`` tensor scaled to 0..1, then ``(x - mean) / std`` per channel when
    ``normalization`` holds ``mean`` and ``std`` lists (on the 0..1 scale)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {array.shape}")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(array.dtype, 1.0)
    chw = array.transpose(2, 0, 1)
    # torch.from_numpy warns on read-only memory (cached images): there, convert while
    # copying, a copy the float conversion makes anyway; writable arrays are not copied.
    if chw.flags.writeable:
        contiguous = np.ascontiguousarray(chw)
    else:
        contiguous = np.array(chw, dtype=np.float32, order="C")
    tensor = torch.from_numpy(contiguous).float() / scale
    normalization = normalization or {}
    mean, std = normalization.get("mean"), normalization.get("std")
    if mean is not None and std is not None:
        channels = tensor.shape[0]
        mean_t = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        if mean_t.shape[0] not in (1, channels) or std_t.shape[0] not in (1, channels):
            raise ValueError(
                f"normalization has {mean_t.shape[0]} means for an image of {channels} channels"
            )
        if not math.isfinite(float(std_t.min())) or float(std_t.min()) <= 0:
            raise ValueError("normalization std must be positive")
        tensor = (tensor - mean_t) / std_t
    return tensor
