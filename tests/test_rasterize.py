"""Unit tests for segkit.rasterize on tiny images with exact expected pixels.

Grids are written as text: ``.`` is 0 and a digit is that value, one row per line.
Pixel-for-pixel agreement with labelme itself is checked in test_rasterize_parity.py
and test_rasterize_golden.py; here the expected values are spelled out by hand.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from segkit.errors import AnnotationError
from segkit.labelme import Shape
from segkit.png import scanline_canvas
from segkit.rasterize import instance_numbers, rasterize, shape_index_image, value_counts

IDS = {"_background_": 0, "a": 1, "b": 2, "__ignore__": 255}


def grid(text: str) -> NDArray[np.uint8]:
    """Parse a text grid: ``.`` → 0, a digit → its value."""
    rows = [line.strip() for line in text.strip().splitlines()]
    return np.array([[0 if c == "." else int(c) for c in row] for row in rows], dtype=np.uint8)


def classes(shapes: list[Shape], size: tuple[int, int]) -> NDArray[np.uint8]:
    """Class mask of ``shapes`` with the test label ids."""
    return rasterize(shapes, size, IDS).class_mask


def rect(x: float, y: float, label: str = "a", group_id: int | None = None) -> Shape:
    """A one-pixel rectangle at (x, y)."""
    return Shape(label, "rectangle", ((x, y), (x, y)), group_id)


# --- shape geometry -------------------------------------------------------------------


def test_polygon_integer_vertices_exact_edges() -> None:
    triangle = Shape("a", "polygon", ((1.0, 1.0), (6.0, 2.0), (3.0, 6.0)))
    expected = grid("""
        ........
        .1......
        .111111.
        ..1111..
        ..111...
        ...11...
        ...1....
    """)
    np.testing.assert_array_equal(classes([triangle], (7, 8)), expected)


def test_polygon_right_triangle_includes_its_edges() -> None:
    # Every pixel on the three edges (legs and hypotenuse) belongs to the shape.
    triangle = Shape("a", "polygon", ((1.0, 1.0), (5.0, 1.0), (1.0, 5.0)))
    expected = grid("""
        .......
        .11111.
        .1111..
        .111...
        .11....
        .1.....
        .......
    """)
    np.testing.assert_array_equal(classes([triangle], (7, 7)), expected)


def test_polygon_fractional_vertices() -> None:
    triangle = Shape("a", "polygon", ((0.6, 0.6), (6.4, 1.2), (2.2, 5.7)))
    expected = grid("""
        1.......
        1111111.
        .11111..
        .1111...
        ..11....
        ..1.....
        ........
    """)
    np.testing.assert_array_equal(classes([triangle], (7, 8)), expected)


def test_polygon_partly_outside_is_clipped() -> None:
    square = Shape("a", "polygon", ((-3.0, -3.0), (2.0, -3.0), (2.0, 2.0), (-3.0, 2.0)))
    expected = grid("""
        111..
        111..
        111..
        .....
    """)
    np.testing.assert_array_equal(classes([square], (4, 5)), expected)


@pytest.mark.parametrize(
    "corners",
    [
        ((1.0, 1.0), (4.0, 3.0)),
        ((4.0, 3.0), (1.0, 1.0)),
        ((1.0, 3.0), (4.0, 1.0)),
        ((4.0, 1.0), (1.0, 3.0)),
    ],
    ids=["tl-br", "br-tl", "bl-tr", "tr-bl"],
)
def test_rectangle_corners_in_any_order(corners: tuple[tuple[float, float], ...]) -> None:
    expected = grid("""
        ......
        .1111.
        .1111.
        .1111.
        ......
    """)
    np.testing.assert_array_equal(classes([Shape("a", "rectangle", corners)], (5, 6)), expected)


def test_circle_radius_is_distance_to_rim_point() -> None:
    circle = Shape("a", "circle", ((4.0, 4.0), (4.0, 7.0)))
    expected = grid("""
        .........
        ...111...
        ..11111..
        .1111111.
        .1111111.
        .1111111.
        ..11111..
        ...111...
        .........
    """)
    np.testing.assert_array_equal(classes([circle], (9, 9)), expected)


POINT_DISC = grid("""
    .............
    ....11111....
    ...1111111...
    ..111111111..
    .11111111111.
    .11111111111.
    .11111111111.
    .11111111111.
    .11111111111.
    ..111111111..
    ...1111111...
    ....11111....
    .............
""")


def test_point_is_disc_of_radius_5() -> None:
    np.testing.assert_array_equal(
        classes([Shape("a", "point", ((6.0, 6.0),))], (13, 13)), POINT_DISC
    )


def test_circle_with_diagonal_rim_uses_euclidean_radius() -> None:
    # Rim point (+3, +4) from the centre: radius 5, the same disc as a point.
    circle = Shape("a", "circle", ((6.0, 6.0), (9.0, 10.0)))
    np.testing.assert_array_equal(classes([circle], (13, 13)), POINT_DISC)


def test_line_is_10_pixels_wide() -> None:
    horizontal = Shape("a", "line", ((1.0, 7.0), (12.0, 7.0)))
    expected = np.zeros((15, 14), dtype=np.uint8)
    expected[3:13, 1:13] = 1  # rows 3..12: ten rows centred on y = 7
    np.testing.assert_array_equal(classes([horizontal], (15, 14)), expected)
    vertical = Shape("a", "line", ((7.0, 1.0), (7.0, 12.0)))
    np.testing.assert_array_equal(classes([vertical], (14, 15)), expected.T)


V_POINTS = ((3.0, 3.0), (10.0, 12.0), (17.0, 3.0))


def test_linestrip_joint_is_rounded() -> None:
    # A sharp V: current labelme (joint="curve") fills the wedge below the apex
    # (rows 14-16 around x = 10) that a plain wide polyline leaves notched.
    expected = grid("""
        .....................
        .......1.....1.......
        ......111...111......
        ....111111.111111....
        ...1111111.1111111...
        .1111111111111111111.
        111111111111111111111
        .1111111111111111111.
        ..11111111111111111..
        ..11111111111111111..
        ...111111111111111...
        ....1111111111111....
        .....11111111111.....
        .....11111111111.....
        ......111111111......
        .......1111111.......
        .........111.........
        .....................
        .....................
        .....................
    """)
    got = classes([Shape("a", "linestrip", V_POINTS)], (20, 21))
    np.testing.assert_array_equal(got, expected)
    assert got[14:17, 9:12].all(), "the wedge below the apex must be filled"


def test_linestrip_of_two_points_equals_line() -> None:
    points = ((2.0, 3.0), (15.0, 11.0))
    strip = classes([Shape("a", "linestrip", points)], (16, 18))
    line = classes([Shape("a", "line", points)], (16, 18))
    np.testing.assert_array_equal(strip, line)
    assert strip.sum() > 100


def test_oriented_rectangle_is_a_filled_polygon() -> None:
    diamond = Shape("a", "oriented_rectangle", ((3.0, 0.0), (6.0, 3.0), (3.0, 6.0), (0.0, 3.0)))
    expected = grid("""
        ...1...
        ..111..
        .11111.
        1111111
        .11111.
        ..111..
        ...1...
    """)
    np.testing.assert_array_equal(classes([diamond], (7, 7)), expected)


# --- mask shapes ----------------------------------------------------------------------

BITMAP = np.array([[1, 0, 1], [1, 1, 0]], dtype=bool)
BITMAP_AT_1_2 = grid("""
    ......
    ......
    .1.1..
    .11...
    ......
""")


def mask_shape(p1: tuple[float, float], p2: tuple[float, float], bitmap: NDArray) -> Shape:
    """A mask shape with corner points ``p1``, ``p2``."""
    return Shape("a", "mask", (p1, p2), None, np.asarray(bitmap, dtype=bool))


def test_mask_integer_corners_place_bitmap_in_box() -> None:
    got = classes([mask_shape((1.0, 2.0), (3.0, 3.0), BITMAP)], (5, 6))
    np.testing.assert_array_equal(got, BITMAP_AT_1_2)


def test_mask_integer_corners_crop_larger_bitmap_to_box() -> None:
    bigger = np.ones((4, 5), dtype=bool)
    bigger[:2, :3] = BITMAP
    got = classes([mask_shape((1.0, 2.0), (3.0, 3.0), bigger)], (5, 6))
    np.testing.assert_array_equal(got, BITMAP_AT_1_2)


def test_mask_fractional_corners_round_top_left_and_keep_bitmap_size() -> None:
    # (0.6, 1.5) rounds to (1, 2) (half to even); the far corner is ignored.
    got = classes([mask_shape((0.6, 1.5), (2.2, 2.2), BITMAP)], (5, 6))
    np.testing.assert_array_equal(got, BITMAP_AT_1_2)


def test_mask_corner_rounds_half_to_even() -> None:
    # x = 2.5 → 2 and y = 0.5 → 0 (numpy rounding, as labelme).
    got = classes([mask_shape((2.5, 0.5), (9.0, 9.0), BITMAP)], (5, 6))
    expected = grid("""
        ..1.1.
        ..11..
        ......
        ......
        ......
    """)
    np.testing.assert_array_equal(got, expected)


def test_mask_partly_outside_top_left_is_clipped() -> None:
    ring = np.ones((3, 3), dtype=bool)
    ring[1, 1] = False
    got = classes([mask_shape((-1.0, -1.0), (1.0, 1.0), ring)], (4, 5))
    expected = grid("""
        .1...
        11...
        .....
        .....
    """)
    np.testing.assert_array_equal(got, expected)


def test_mask_fractional_partly_outside_bottom_right_is_clipped() -> None:
    got = classes([mask_shape((4.4, 3.6), (6.4, 5.6), np.ones((3, 3)))], (5, 6))
    expected = np.zeros((5, 6), dtype=np.uint8)
    expected[4, 4:6] = 1
    np.testing.assert_array_equal(got, expected)


def test_mask_wholly_outside_draws_nothing() -> None:
    shapes = [
        mask_shape((7.0, 1.0), (9.0, 2.0), BITMAP),
        mask_shape((-4.2, 0.0), (-2.0, 1.0), BITMAP),
    ]
    assert not classes(shapes, (5, 6)).any()


def test_mask_with_reversed_integer_corners_draws_nothing() -> None:
    # Corners in the wrong order span an empty box; labelme draws nothing and does not
    # fail, however wide the other side of the box is.
    shapes = [
        rect(0.0, 0.0),
        mask_shape((3.0, 3.0), (1.0, 1.0), np.ones((3, 3))),
        mask_shape((0.0, 4.0), (5.0, 2.0), np.ones((1, 1))),
    ]
    expected = np.zeros((5, 6), dtype=np.uint8)
    expected[0, 0] = 1
    np.testing.assert_array_equal(classes(shapes, (5, 6)), expected)


def test_mask_bitmap_smaller_than_integer_box_is_an_error() -> None:
    shapes = [rect(0.0, 0.0), mask_shape((1.0, 1.0), (3.0, 3.0), np.ones((2, 2)))]
    with pytest.raises(
        AnnotationError,
        match=r"^f\.json: shapes\[1\]: mask bitmap is 2×2 but its corner points span 3×3",
    ):
        rasterize(shapes, (5, 5), IDS, where="f.json: ")


# --- order, classes and instances -----------------------------------------------------


def test_later_shape_paints_over_earlier() -> None:
    a = Shape("a", "rectangle", ((0.0, 0.0), (3.0, 2.0)))
    b = Shape("b", "rectangle", ((2.0, 1.0), (5.0, 3.0)))
    np.testing.assert_array_equal(
        classes([a, b], (4, 6)),
        grid("""
            1111..
            112222
            112222
            ..2222
        """),
    )
    np.testing.assert_array_equal(
        classes([b, a], (4, 6)),
        grid("""
            1111..
            111122
            111122
            ..2222
        """),
    )


def test_background_shape_erases_what_is_below() -> None:
    a = Shape("a", "rectangle", ((0.0, 0.0), (3.0, 1.0)))
    hole = Shape("_background_", "rectangle", ((1.0, 0.0), (2.0, 1.0)))
    got = rasterize([a, hole], (2, 4), IDS)
    np.testing.assert_array_equal(got.class_mask, grid("1..1\n1..1"))
    np.testing.assert_array_equal(got.instance_mask, grid("1..1\n1..1"))


def test_instances_are_label_group_pairs_in_order_of_appearance() -> None:
    shapes = [
        rect(0, 0, "a", 1),
        rect(1, 0, "b", 1),  # same group_id, other label: a new instance
        rect(2, 0, "a", None),  # no group_id: an instance of its own
        rect(3, 0, "a", 1),  # joins the first
        rect(4, 0, "a", None),  # another instance of its own
        rect(5, 0, "b", 2),
        rect(6, 0, "b", 1),  # joins the second
    ]
    assert instance_numbers(shapes) == [1, 2, 3, 1, 4, 5, 2]
    got = rasterize(shapes, (1, 7), IDS)
    np.testing.assert_array_equal(got.instance_mask, [[1, 2, 3, 1, 4, 5, 2]])
    np.testing.assert_array_equal(got.class_mask, [[1, 2, 1, 1, 1, 2, 2]])
    assert got.instance_count == 5
    assert got.instance_mask.dtype == np.uint8


def test_negative_group_ids_are_ordinary_group_ids() -> None:
    # labelme keys instances on (label, group_id) for any int group_id, negative ones
    # included: an ungrouped shape never shares an instance with a grouped one.
    shapes = [
        rect(0, 0, "a"),
        rect(1, 0, "a", -1),
        rect(2, 0, "a", 5),
        rect(3, 0, "a"),
        rect(4, 0, "a", -3),
        rect(5, 0, "a", -1),
    ]
    assert instance_numbers(shapes) == [1, 2, 3, 4, 5, 2]


def test_background_and_ignore_shapes_take_instance_numbers() -> None:
    # Numbering counts every shape, as labelme does; the masks then show 0 for
    # background and 255 for ignore.
    shapes = [rect(0, 0, "_background_"), rect(1, 0, "__ignore__"), rect(2, 0, "a")]
    got = rasterize(shapes, (1, 4), IDS)
    np.testing.assert_array_equal(got.class_mask, [[0, 255, 1, 0]])
    np.testing.assert_array_equal(got.instance_mask, [[0, 255, 3, 0]])
    assert got.instance_count == 3


def test_ignore_shape_with_group_joins_no_other_label() -> None:
    shapes = [rect(0, 0, "a", 1), rect(1, 0, "__ignore__", 1), rect(2, 0, "a", 1)]
    got = rasterize(shapes, (1, 3), IDS)
    np.testing.assert_array_equal(got.instance_mask, [[1, 255, 1]])
    assert got.instance_count == 2


def test_empty_shape_list() -> None:
    got = rasterize([], (2, 3), IDS)
    assert got.class_mask.shape == (2, 3) and not got.class_mask.any()
    assert got.instance_mask.dtype == np.uint8 and not got.instance_mask.any()
    assert got.instance_count == 0


# --- many shapes ------------------------------------------------------------------------


def pixel_shapes(count: int, width: int, label: str = "a") -> list[Shape]:
    """``count`` one-pixel rectangles laid out row by row, each its own instance."""
    return [rect(float(i % width), float(i // width), label) for i in range(count)]


def test_index_image_is_8_bit_up_to_255_shapes() -> None:
    index = shape_index_image(pixel_shapes(255, 16), (16, 16))
    assert index.dtype == np.uint8
    assert index.reshape(-1)[:256].tolist() == [*range(1, 256), 0]


def test_index_image_switches_to_32_bit_past_255_shapes() -> None:
    index = shape_index_image(pixel_shapes(300, 20), (16, 20))
    assert index.dtype.itemsize >= 4
    assert index.reshape(-1)[:301].tolist() == [*range(1, 301), 0]


def test_many_shapes_of_one_instance_keep_8_bit_instances() -> None:
    shapes = [rect(float(i % 20), float(i // 20), "b", 7) for i in range(300)]
    got = rasterize(shapes, (16, 20), IDS)
    assert got.instance_count == 1
    assert got.instance_mask.dtype == np.uint8
    assert got.instance_mask.reshape(-1)[:301].tolist() == [1] * 300 + [0]
    assert got.class_mask.reshape(-1)[:301].tolist() == [2] * 300 + [0]


def test_254_instances_fit_8_bits() -> None:
    got = rasterize([*pixel_shapes(253, 16), rect(15.0, 15.0, "__ignore__")], (16, 16), IDS)
    assert got.instance_count == 254
    assert got.instance_mask.dtype == np.uint8
    flat = got.instance_mask.reshape(-1)
    assert flat[:254].tolist() == [*range(1, 254), 0]
    assert flat[-1] == 255


def test_255_instances_need_16_bits() -> None:
    # Instance 255 would read as ignore in an 8-bit mask.
    got = rasterize(pixel_shapes(255, 16), (16, 16), IDS)
    assert got.instance_count == 255
    assert got.instance_mask.dtype == np.uint16
    assert got.instance_mask.reshape(-1)[:256].tolist() == [*range(1, 256), 0]


def test_more_than_254_instances_use_16_bits_with_65535_ignore() -> None:
    shapes = [
        *pixel_shapes(299, 20),
        rect(19.0, 15.0, "__ignore__"),
        rect(0.0, 15.0, "_background_"),
    ]
    got = rasterize(shapes, (16, 20), IDS)
    assert got.instance_count == 301
    assert got.instance_mask.dtype == np.uint16
    flat = got.instance_mask.reshape(-1)
    assert flat[:300].tolist() == [*range(1, 300), 0]
    assert got.instance_mask[15, 19] == 65535
    assert got.instance_mask[15, 0] == 0
    assert got.class_mask.dtype == np.uint8
    assert got.class_mask[15, 19] == 255
    assert got.class_mask[14, 18] == 1


@given(
    st.integers(0, 40),
    st.integers(0, 30),
    st.lists(st.tuples(st.integers(0, 255), st.integers(1, 400)), max_size=30),
    st.floats(0, 1),
    st.randoms(use_true_random=False),
)
@settings(max_examples=200, deadline=None)
def test_value_counts_equal_pillows_histogram(
    width: int, height: int, runs: list, noise: float, rng
) -> None:
    """Runs of values and random noise, on a scanline canvas and on a plain image."""
    values = np.concatenate([np.full(n, v, np.uint8) for v, n in runs] or [np.zeros(0, np.uint8)])
    values = (
        np.resize(values, width * height) if values.size else np.zeros(width * height, np.uint8)
    )
    noisy = [i for i in range(values.size) if rng.random() < noise]
    values[noisy] = [rng.randrange(256) for _ in noisy]
    canvas = scanline_canvas(width, height)
    canvas.paste(PIL.Image.frombytes("L", (width, height), values.tobytes()))
    plain = PIL.Image.frombytes("L", (width, height), values.tobytes())
    expected = plain.histogram()
    assert value_counts(canvas).tolist() == expected
    assert value_counts(plain).tolist() == expected


def test_background_and_ignore_shapes_keep_labelme_numbers_but_are_no_instances() -> None:
    # labelme numbers every (label, group_id) pair; background and ignore shapes paint
    # 0 and the ignore value, so only the others count, and only their ids set the width.
    shapes = [rect(0, 0, "_background_"), rect(1, 0), rect(2, 0, "__ignore__"), rect(3, 0, "b")]
    got = rasterize(shapes, (1, 4), IDS)
    np.testing.assert_array_equal(got.instance_mask, [[0, 2, 255, 4]])
    assert (got.instance_count, got.object_count, got.max_instance_id) == (4, 2, 4)


@pytest.mark.parametrize(("background_first", "dtype"), [(False, np.uint8), (True, np.uint16)])
def test_a_background_shape_widens_only_when_it_pushes_ids_past_254(
    background_first: bool, dtype: type
) -> None:
    background = rect(15.0, 15.0, "_background_")
    objects = pixel_shapes(254, 16)
    shapes = [background, *objects] if background_first else [*objects, background]
    got = rasterize(shapes, (16, 16), IDS)
    assert got.instance_mask.dtype == dtype
    assert got.object_count == 254 and got.max_instance_id == 254 + background_first
    assert got.instance_mask.max() == 254 + background_first
