"""labelme shapes → class and instance masks, pixel-identical to labelme's own rasterization.

labelme draws every shape into its own full-size boolean mask and copies it into the
label arrays, so its cost grows with shapes × image size. segkit draws every shape,
in order, straight into the class mask with ink = class id (and into the instance
mask with ink = instance id), using the very same Pillow calls labelme uses (same
geometry, same outline/fill arguments). Coverage does not depend on the ink, and a
later shape overwrites earlier ones exactly as labelme's ``cls[mask] = id`` does.

Rules followed (current labelme, ``labelme._utils.shape``):
- polygon and oriented_rectangle: ``polygon(outline, fill)``, outline included;
- rectangle: corners sorted, ``rectangle(outline, fill)``;
- circle: centre + point on the rim, radius ``sqrt(dx² + dy²)``;
- line: width 10; linestrip: width 10 with rounded joints (``joint="curve"``);
- point: disc of radius 5;
- mask: bitmap placed at its rounded top-left corner; integer corners crop it to the
  corner box, fractional ones keep the bitmap's size; clipped to the image;
- instances are (label, group_id) pairs numbered by first appearance from 1; a shape
  without group_id is an instance of its own. Background and ignore shapes take a
  number too (labelme numbers every shape), so the ids of real instances can have gaps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageDraw
from numpy.typing import NDArray

from segkit.errors import AnnotationError
from segkit.labelme import Shape
from segkit.png import mapped_scanlines, scanline_canvas
from segkit.voc import IGNORE_INDEX, IGNORE_INDEX_16, with_voc_palette

LINE_WIDTH = 10
POINT_RADIUS = 5
#: Largest instance id an 8-bit instance PNG holds (255 is the ignore value).
MAX_INSTANCES_8BIT = 254


@dataclass(frozen=True)
class Rasterized:
    """Masks of one image: class ids (0 background, 255 ignore) and instance ids.

    The masks are kept as Pillow images, ready to encode: ``class_image`` is a VOC
    palette ("P") image; ``instance_image`` is one too when ids fit (largest instance
    id ≤ 254, 255 = ignore), else 16-bit ("I;16", 65535 = ignore). Instance pixels
    whose class is background are 0. ``class_mask`` / ``instance_mask`` give them as
    numpy arrays.
    """

    class_image: PIL.Image.Image
    instance_image: PIL.Image.Image
    #: labelme's count of (label, group_id) pairs, background and ignore shapes included.
    instance_count: int
    #: Pixels per class value, length 256 (index 255 counts ignore pixels).
    class_counts: NDArray[np.int64]
    #: Instances that get an instance id (neither background nor ignore).
    object_count: int = 0
    #: The largest instance id given to such an instance (0 when there is none).
    max_instance_id: int = 0

    @property
    def class_mask(self) -> NDArray[np.uint8]:
        """(H, W) uint8 class ids."""
        return np.asarray(self.class_image, dtype=np.uint8)

    @property
    def instance_mask(self) -> NDArray[np.uint8] | NDArray[np.uint16]:
        """(H, W) instance ids: uint8, or uint16 beyond 254 instances."""
        wide = self.instance_image.mode != "P"
        return np.asarray(self.instance_image, dtype=np.uint16 if wide else np.uint8)


def _draw(draw: PIL.ImageDraw.ImageDraw, shape: Shape, ink: int) -> None:
    xy = list(shape.points)
    kind = shape.shape_type
    if kind in ("polygon", "oriented_rectangle"):
        draw.polygon(xy, outline=ink, fill=ink)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle(
            ((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=ink, fill=ink
        )
    elif kind == "circle":
        (cx, cy), (px, py) = xy
        # Same expression as labelme (not math.hypot) so the radius matches to the bit.
        radius = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(
            ((cx - radius, cy - radius), (cx + radius, cy + radius)), outline=ink, fill=ink
        )
    elif kind == "line":
        draw.line(xy, fill=ink, width=LINE_WIDTH)
    elif kind == "linestrip":
        draw.line(xy, fill=ink, width=LINE_WIDTH, joint="curve")
    elif kind == "point":
        (cx, cy) = xy[0]
        r = POINT_RADIUS
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=ink, fill=ink)
    else:  # pragma: no cover - labelme.py rejects unknown types before drawing
        raise ValueError(f"cannot draw shape_type {kind!r}")


def _paste_bitmap(canvas: PIL.Image.Image, shape: Shape, ink: int, where: str) -> None:
    bitmap = shape.mask
    if bitmap is None:  # pragma: no cover - labelme.py guarantees a bitmap
        raise ValueError("mask shape without bitmap")
    corners = np.asarray(shape.points, dtype=np.float64)
    # numpy rounding (half to even) on purpose: labelme places the bitmap this way.
    (x1, y1), (x2, y2) = corners.round().astype(np.int64).tolist()
    if np.array_equal(corners, np.trunc(corners)):
        box_h, box_w = y2 - y1 + 1, x2 - x1 + 1
        if box_h <= 0 or box_w <= 0:  # reversed corners: labelme paints nothing
            return
        if box_h > bitmap.shape[0] or box_w > bitmap.shape[1]:
            raise AnnotationError(
                f"{where}mask bitmap is {bitmap.shape[0]}×{bitmap.shape[1]} but its corner "
                f"points span {box_h}×{box_w} pixels"
            )
    else:
        box_h, box_w = bitmap.shape
    ys, ye = max(y1, 0), min(y1 + box_h, canvas.height)
    xs, xe = max(x1, 0), min(x1 + box_w, canvas.width)
    if ys >= ye or xs >= xe:
        return
    region = np.ascontiguousarray(bitmap[ys - y1 : ye - y1, xs - x1 : xe - x1], dtype=np.uint8)
    stencil = PIL.Image.frombytes("L", (xe - xs, ye - ys), (region * 255).tobytes())
    canvas.paste(ink, (xs, ys, xe, ye), stencil)


def shape_index_image(shapes: Sequence[Shape], size: tuple[int, int], where: str = "") -> NDArray:
    """(H, W) array: 0 where no shape paints, else 1 + index of the last shape painting there."""
    mode = "L" if len(shapes) <= 255 else "I"
    return np.asarray(_paint(shapes, size, range(1, len(shapes) + 1), mode, where))


def _paint(
    shapes: Sequence[Shape], size: tuple[int, int], inks: Iterable[int], mode: str, where: str
) -> PIL.Image.Image:
    """Draw each shape with its ink, in order, on a zero canvas (later shapes win)."""
    height, width = size
    # "L" canvases are laid out as PNG scanlines: the mask PNG deflates them as they are.
    canvas = (
        scanline_canvas(width, height) if mode == "L" else PIL.Image.new(mode, (width, height), 0)
    )
    draw = PIL.ImageDraw.Draw(canvas)
    for index, (shape, ink) in enumerate(zip(shapes, inks, strict=True)):
        if shape.shape_type == "mask":
            _paste_bitmap(canvas, shape, ink, f"{where}shapes[{index}]: ")
        else:
            _draw(draw, shape, ink)
    return canvas


#: Above this share of run boundaries per pixel, Pillow's histogram is faster.
_MAX_RUN_SHARE = 1 / 16


def _runs(image: PIL.Image.Image) -> tuple[NDArray, NDArray, NDArray] | None:
    """(scanlines, run starts, run lengths) of a ``scanline_canvas`` image with long runs."""
    scanlines = mapped_scanlines(image)
    if scanlines is None or not scanlines.size:
        return None
    starts = np.flatnonzero(scanlines[1:] != scanlines[:-1]) + 1
    if starts.size > _MAX_RUN_SHARE * scanlines.size:
        return None
    starts = np.concatenate(([0], starts))
    return scanlines, starts, np.diff(starts, append=scanlines.size)


def _counts(values: NDArray, lengths: NDArray, height: int) -> NDArray[np.int64]:
    counts = np.bincount(values, weights=lengths, minlength=256).astype(np.int64)
    counts[0] -= height  # the rows' filter bytes
    return counts


def value_counts(image: PIL.Image.Image) -> NDArray[np.int64]:
    """Pixels per value (length 256) of an "L"/"P" image, like ``image.histogram()``.

    Label masks are long runs of one value, and a histogram adding pixels one at a
    time stalls on runs (every pixel increments the counter the last one did). On a
    ``scanline_canvas`` it is twice as fast to find the runs and add their lengths.
    """
    runs = _runs(image)
    if runs is None:
        return np.asarray(image.histogram(), dtype=np.int64)
    scanlines, starts, lengths = runs
    return _counts(scanlines[starts], lengths, image.height)


def _mapped_canvas(
    image: PIL.Image.Image, lut: NDArray[np.uint8]
) -> tuple[PIL.Image.Image, NDArray[np.int64]] | None:
    """``lut`` applied to a ``scanline_canvas`` image, as a new one, with its value counts.

    Run by run: an instance canvas has a few thousand runs, so this costs a fraction
    of drawing the shapes again. ``None`` when the image is not made of long runs.
    ``lut[0]`` must be 0 (the filter bytes).
    """
    runs = _runs(image)
    if runs is None:
        return None
    scanlines, starts, lengths = runs
    values = lut[scanlines[starts]]
    # The new canvas's memory in one go: its scanlines and the spare byte after them.
    memory = np.repeat(np.append(values, np.uint8(0)), np.append(lengths, 1))
    canvas = scanline_canvas(image.width, image.height, memory)
    return canvas, _counts(values, lengths, image.height)


def instance_numbers(shapes: Sequence[Shape]) -> list[int]:
    """labelme's instance id (from 1) of each shape: first appearance of (label, group_id)."""
    numbers: dict[tuple[str, object], int] = {}
    result = []
    for shape in shapes:
        # An ungrouped shape gets a fresh object as its group: a key no other shape can
        # share (negative group ids are ordinary ids in labelme).
        group: object = object() if shape.group_id is None else shape.group_id
        numbers.setdefault((shape.label, group), len(numbers) + 1)
        result.append(numbers[(shape.label, group)])
    return result


def rasterize(
    shapes: Sequence[Shape], size: tuple[int, int], label_ids: Mapping[str, int], where: str = ""
) -> Rasterized:
    """Draw ``shapes`` (already label-mapped) into class and instance masks of ``size`` (H, W).

    ``label_ids`` maps each label to 0..254 or 255 (ignore). Every shape's label must be
    in it. ``where`` prefixes error messages (e.g. the file name).

    >>> from segkit.labelme import Shape
    >>> sq = Shape("cat", "rectangle", ((1.0, 1.0), (2.0, 2.0)))
    >>> rasterize([sq], (4, 4), {"_background_": 0, "cat": 1}).class_mask.tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    class_ids = [label_ids[shape.label] for shape in shapes]
    numbers = instance_numbers(shapes)
    # labelme's numbers are kept (pixel parity), but only ids that are painted as ids
    # decide the PNG width: background and ignore shapes paint 0 and the ignore value.
    objects = {
        number
        for class_id, number in zip(class_ids, numbers, strict=True)
        if class_id not in (0, IGNORE_INDEX)
    }
    top = max(objects, default=0)
    wide = top > MAX_INSTANCES_8BIT
    ignore = IGNORE_INDEX_16 if wide else IGNORE_INDEX
    instance_ids = [
        0 if class_id == 0 else ignore if class_id == IGNORE_INDEX else number
        for class_id, number in zip(class_ids, numbers, strict=True)
    ]
    # Coverage is the same whatever the ink, and an 8-bit instance id (0 and 255 too)
    # stands for one class: the class mask is the instance mask through a lookup
    # table, run by run, cheaper than drawing every shape again. Drawn twice only for
    # 16-bit ids or a canvas without long runs.
    instance_image = _paint(shapes, size, instance_ids, "I" if wide else "L", where)
    mapped = None
    if not wide:
        lut = np.zeros(256, dtype=np.uint8)
        lut[instance_ids] = class_ids
        mapped = _mapped_canvas(instance_image, lut)
    if mapped is None:
        class_image = _paint(shapes, size, class_ids, "L", where)
        counts = value_counts(class_image)
    else:
        class_image, counts = mapped
    if wide:
        instance_image = PIL.Image.fromarray(np.asarray(instance_image).astype(np.uint16))
    else:
        instance_image = with_voc_palette(instance_image)
    return Rasterized(
        with_voc_palette(class_image),
        instance_image,
        max(numbers, default=0),
        counts,
        object_count=len(objects),
        max_instance_id=top,
    )
