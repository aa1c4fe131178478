"""predict.polygons: class masks → labelme polygons, checked by repainting them with
segkit's labelme-exact rasterizer (itself tested pixel-for-pixel against labelme)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segkit.labelme import Shape
from segkit.predict.polygons import BACKGROUND, mask_regions, regions_to_shapes
from segkit.rasterize import rasterize

IDS = {str(i): i for i in range(255)}


def repaint(mask: np.ndarray, **kwargs: object) -> np.ndarray:
    """Export ``mask`` as polygons and draw them back as labelme would."""
    regions = mask_regions(mask, **kwargs)  # type: ignore[arg-type]
    shapes = [Shape(str(r.class_id), "polygon", r.points) for r in regions]
    return rasterize(shapes, mask.shape, IDS).class_mask


def test_hole_comes_back_as_a_later_background_shape() -> None:
    mask = np.zeros((7, 7), np.uint8)
    mask[1:6, 1:6] = 1
    mask[3, 3] = 0
    regions = mask_regions(mask)
    assert [(r.class_id, r.area) for r in regions] == [(1, 24), (0, 1)]
    shapes = regions_to_shapes(regions, ["_background_", "cell"])
    assert [s["label"] for s in shapes] == ["cell", BACKGROUND]
    assert np.array_equal(repaint(mask), mask)


def test_island_in_a_hole_in_an_island_is_painted_in_nesting_order() -> None:
    mask = np.zeros((13, 13), np.uint8)
    mask[1:12, 1:12] = 1
    mask[3:10, 3:10] = 2  # a hole of class 1 filled by class 2 ...
    mask[5:8, 5:8] = 0  # ... whose own hole is background ...
    mask[6, 6] = 1  # ... holding a class-1 island
    assert [r.class_id for r in mask_regions(mask)] == [1, 2, 0, 1]
    assert np.array_equal(repaint(mask), mask)


def test_border_regions_thin_lines_and_single_pixels_close() -> None:
    mask = np.zeros((9, 11), np.uint8)
    mask[:, 0] = 1  # one-pixel line on the border
    mask[4, 2:11] = 2  # one-pixel line to the other border
    mask[0, 10] = 3  # a corner pixel
    mask[7, 5] = 3  # a lone pixel
    for region in mask_regions(mask, simplify=0.5):
        assert len(region.points) >= 3  # labelme needs three points per polygon
        xs, ys = zip(*region.points, strict=True)
        assert min(xs) >= 0 and max(xs) <= 10 and min(ys) >= 0 and max(ys) <= 8
    assert np.array_equal(repaint(mask), mask)


def test_min_area_and_ignore() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[1:5, 1:5] = 1  # 16 px
    mask[7:9, 7:9] = 2  # 4 px
    mask[0, 9] = 255
    kept = mask_regions(mask, min_area=5)
    assert [(r.class_id, r.area) for r in kept] == [(1, 16)]
    with pytest.raises(ValueError, match="negative"):
        mask_regions(mask, simplify=-1)


def test_simplify_reduces_points_of_a_staircase() -> None:
    yy, xx = np.mgrid[:60, :60]
    mask = ((xx - 30) ** 2 + (yy - 30) ** 2 < 25**2).astype(np.uint8)
    exact = mask_regions(mask, simplify=0)[0]
    simple = mask_regions(mask, simplify=1.0)[0]
    assert len(simple.points) < len(exact.points) / 3
    back = repaint(mask, simplify=1.0)
    assert (back == mask).mean() > 0.99


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(0, 3))
)
def test_exact_outlines_repaint_every_pixel(mask: np.ndarray) -> None:
    """With no simplification the export is lossless, whatever the mask."""
    assert np.array_equal(repaint(mask, simplify=0), mask)
