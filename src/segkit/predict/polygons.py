"""Class mask → labelme polygon shapes: one polygon per connected region per class.

A region is a 4-connected component of one class id (scikit-image's contour tracer
keeps diagonal-only neighbours apart, as ``find_contours`` does by default). Its outer
boundary is traced with :func:`skimage.measure.find_contours` on the region with its
holes filled, padded by one pixel so regions on the image border close, simplified
with :func:`skimage.measure.approximate_polygon` and clipped to the image.

labelme polygons have no holes, but labelme paints shapes in order and a later shape
wins. So regions are ordered by the area of their filled outline, largest first: a
region inside another's hole always has a smaller filled area, so it is painted after
(on top of) its container. A background region inside a hole becomes a
``_background_`` shape; background elsewhere needs no shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage import measure

#: The label labelme and segkit give class 0.
BACKGROUND = "_background_"
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Region:
    """One connected region of a class: its id, pixel count and outline ``(x, y)`` points."""

    class_id: int
    area: int
    filled_area: int
    points: tuple[tuple[float, float], ...]


def _outline(filled: NDArray[np.bool_], tolerance: float) -> NDArray[np.float64]:
    """The outer boundary ``(row, col)`` of one filled region through the centres of its
    border pixels (in the region's own box)."""
    padded = np.pad(filled, 1)
    contour = max(measure.find_contours(padded.astype(np.float32), 0.5), key=len)
    # Marching squares puts each point halfway between an inside and an outside pixel.
    # Pillow rounds half-pixel vertices (growing the region), so snap each point onto
    # the inside pixel's centre: labelme then paints exactly the region's pixels.
    low, high = np.floor(contour).astype(np.intp), np.ceil(contour).astype(np.intp)
    inside_low = padded[low[:, 0], low[:, 1]]
    snapped = np.where(inside_low[:, None], low, high)
    keep = np.ones(len(snapped), dtype=bool)
    keep[1:] = np.any(snapped[1:] != snapped[:-1], axis=1)
    points = snapped[keep].astype(np.float64)
    if len(points) > 1 and np.array_equal(points[0], points[-1]):
        points = points[:-1]  # labelme closes polygons itself
    if tolerance > 0 and len(points) > 3:
        closed = measure.approximate_polygon(np.vstack([points, points[:1]]), tolerance)[:-1]
        if len(closed) >= 3:
            points = closed
    if len(points) < 3:  # one pixel or a one-pixel line: labelme needs three points
        points = points[[0, len(points) - 1, 0]]
    return points - 1.0


def mask_regions(
    mask: NDArray[np.integer], *, simplify: float = 0.0, min_area: int = 0, ignore: int = 255
) -> list[Region]:
    """Connected regions of every class in ``mask`` ([H, W] class ids), in paint order.

    Regions of ``ignore`` and regions under ``min_area`` pixels are dropped; background
    (0) regions are kept only where another region's outline would cover them.

    >>> m = np.zeros((5, 5), np.uint8); m[1:4, 1:4] = 1; m[2, 2] = 0
    >>> [(r.class_id, r.area) for r in mask_regions(m)]
    [(1, 8), (0, 1)]
    """
    if simplify < 0 or min_area < 0:
        raise ValueError("simplify and min_area must not be negative")
    mask = np.asarray(mask)
    height, width = mask.shape
    found: list[tuple[int, NDArray[np.bool_], NDArray[np.bool_], tuple[slice, slice]]] = []
    covered = np.zeros(mask.shape, dtype=bool)  # inside some non-background outline
    for class_id in np.unique(mask).tolist():
        if class_id == ignore:
            continue
        labels, _ = ndimage.label(mask == class_id)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is None:
                continue
            region = labels[box] == index
            # Holes: background of the box not 8-connected to its border.
            filled = ndimage.binary_fill_holes(region, structure=_EIGHT)
            if class_id != 0:
                covered[box] |= filled
            found.append((int(class_id), region, filled, box))
    regions = []
    for class_id, region, filled, box in found:
        area = int(region.sum())
        if area < max(min_area, 1):
            continue
        if class_id == 0 and not (covered[box] & region).any():
            continue
        contour = _outline(filled, simplify)
        ys = np.clip(contour[:, 0] + box[0].start, 0, height - 1)
        xs = np.clip(contour[:, 1] + box[1].start, 0, width - 1)
        points = tuple((float(x), float(y)) for x, y in zip(xs, ys, strict=True))
        regions.append(Region(class_id, area, int(filled.sum()), points))
    # Containers first: a region in another's hole has the smaller filled area.
    regions.sort(key=lambda r: -r.filled_area)
    return regions


def regions_to_shapes(
    regions: Sequence[Region], classes: Sequence[str], *, flags: dict[str, bool] | None = None
) -> list[dict[str, Any]]:
    """labelme shape dicts (polygons) for ``regions``, labelled by ``classes[class_id]``."""
    shapes = []
    for region in regions:
        label = classes[region.class_id] if region.class_id < len(classes) else str(region.class_id)
        if region.class_id == 0:
            label = BACKGROUND
        shapes.append(
            {
                "label": label,
                "points": [[round(x, 2), round(y, 2)] for x, y in region.points],
                "group_id": None,
                "description": "segkit prediction",
                "shape_type": "polygon",
                "flags": dict(flags or {}),
                "mask": None,
            }
        )
    return shapes
