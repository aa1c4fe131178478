"""Differential tests: segkit's masks against the installed labelme's ``shapes_to_label``.

Skipped when labelme is not installed (``pip install -e ".[dev]"``); the committed
goldens in tests/data/parity (test_rasterize_golden.py) keep parity checked without it.

segkit follows *current* labelme (>= 7.1). Two behaviours changed after the labelme
6.x releases: linestrips got rounded joints, and mask shapes are placed at their
rounded top-left corner and clipped to the image. When the installed labelme still
behaves the old way (detected by running it, not from its version string), only the
cases that depend on those two behaviours are skipped.

Every case goes through JSON: segkit parses the text with ``parse_annotation``, labelme
gets the same text with masks decoded by its own ``img_b64_to_arr``, as its LabelFile
does. labelme's raw output is then post-processed the way segkit documents it: ignore
(-1 in labelme's convention) becomes 255; instance ids are 0 where the class is
background and the ignore value where it is ignore; > 254 instances → uint16 with 65535.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
from helpers_convert import shape as json_shape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from segkit.labelme import parse_annotation
from segkit.rasterize import rasterize

labelme = pytest.importorskip("labelme")


def _labelme_functions() -> tuple[Callable[..., Any], Callable[[str], NDArray]]:
    """labelme's shapes_to_label and img_b64_to_arr, from wherever this version keeps them."""
    errors = []
    for package in ("labelme._utils", "labelme.utils"):
        try:
            shape_module = __import__(f"{package}.shape", fromlist=["shapes_to_label"])
            utils_module = __import__(package, fromlist=["img_b64_to_arr"])
            return shape_module.shapes_to_label, utils_module.img_b64_to_arr
        except ImportError as error:
            errors.append(f"{package}: {error}")
    pytest.skip(
        f"labelme {getattr(labelme, '__version__', '?')} is installed but its shape module "
        f"cannot be imported ({'; '.join(errors)})",
        allow_module_level=True,
    )
    raise AssertionError("unreachable")  # pragma: no cover


shapes_to_label, img_b64_to_arr = _labelme_functions()

#: labels.txt order: labelme's example converter gives line i the value i - 1.
LABELS = ("__ignore__", "_background_", "road", "car")
LABELME_VALUES = {name: i - 1 for i, name in enumerate(LABELS)}
SEGKIT_IDS = {name: (255 if value == -1 else value) for name, value in LABELME_VALUES.items()}
V_POINTS = [[3, 3], [10, 12], [17, 3]]


# --- running both sides -----------------------------------------------------------------


def b64_png(bitmap: NDArray) -> str:
    """A boolean bitmap as labelme stores it: base64 of a 0/1 8-bit PNG."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.asarray(bitmap, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def shape(
    label: str,
    shape_type: str,
    points: list[list[float]],
    group_id: int | None = None,
    bitmap: NDArray | None = None,
) -> dict[str, Any]:
    """One shape as labelme writes it in JSON."""
    mask = None if bitmap is None else b64_png(bitmap)
    return json_shape(label, shape_type, points, group_id, mask=mask)


def annotation_text(size: tuple[int, int], shapes: list[dict[str, Any]]) -> str:
    """A labelme JSON document of ``size`` (H, W) holding ``shapes``."""
    return json.dumps(
        {
            "version": "5.5.0",
            "flags": {},
            "shapes": shapes,
            "imagePath": "image.png",
            "imageData": None,
            "imageHeight": size[0],
            "imageWidth": size[1],
        }
    )


def count_instances(shapes: list[dict[str, Any]]) -> int:
    """Distinct (label, group_id) pairs; a shape without group_id is one of its own."""
    seen: list[object] = []
    for item in shapes:
        key = object() if item["group_id"] is None else (item["label"], item["group_id"])
        if key not in seen:
            seen.append(key)
    return len(seen)


def labelme_masks(text: str) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """labelme's raw (class, instance) arrays for a JSON document."""
    data = json.loads(text)
    shapes = []
    for item in data["shapes"]:
        bitmap = None if item["mask"] is None else img_b64_to_arr(item["mask"]).astype(bool)
        shapes.append({**item, "mask": bitmap, "other_data": {}})
    size = (data["imageHeight"], data["imageWidth"])
    return shapes_to_label(size, shapes, LABELME_VALUES)


def expected_from_labelme(
    cls: NDArray, ins: NDArray, instance_count: int
) -> tuple[NDArray[np.uint8], NDArray]:
    """labelme's raw output turned into segkit's documented class and instance masks."""
    ignore = cls == -1
    class_mask = np.where(ignore, 255, cls)
    assert class_mask.min() >= 0 and class_mask.max() <= 255
    wide = instance_count > 254
    assert ins.max(initial=0) <= instance_count
    instance_mask = ins.astype(np.uint16 if wide else np.uint8)
    instance_mask[cls == 0] = 0
    instance_mask[ignore] = 65535 if wide else 255
    return class_mask.astype(np.uint8), instance_mask


def assert_parity(size: tuple[int, int], shapes: list[dict[str, Any]]) -> None:
    """segkit's masks for ``shapes`` equal labelme's, pixel for pixel and dtype for dtype."""
    text = annotation_text(size, shapes)
    cls, ins = labelme_masks(text)
    count = count_instances(shapes)
    want_class, want_instance = expected_from_labelme(cls, ins, count)
    annotation = parse_annotation(Path("case.json"), text)
    got = rasterize(annotation.shapes, size, SEGKIT_IDS)
    np.testing.assert_array_equal(got.class_mask, want_class, err_msg="class mask")
    np.testing.assert_array_equal(got.instance_mask, want_instance, err_msg="instance mask")
    assert got.class_mask.dtype == np.uint8
    assert got.instance_mask.dtype == want_instance.dtype
    assert got.instance_count == count


# --- which labelme is installed ---------------------------------------------------------


def _draw_linestrip(joint: str | None) -> NDArray[np.bool_]:
    canvas = PIL.Image.new("L", (21, 20), 0)
    PIL.ImageDraw.Draw(canvas).line([tuple(p) for p in V_POINTS], fill=1, width=10, joint=joint)
    return np.asarray(canvas) == 1


def _probe_linestrip_joints() -> bool:
    """True when the installed labelme rounds linestrip joints (labelme >= 7.1)."""
    text = annotation_text((20, 21), [shape("road", "linestrip", V_POINTS)])
    drawn = labelme_masks(text)[0] == 1
    # An unrecognised result counts as current, so the parity tests run and show it.
    return not np.array_equal(drawn, _draw_linestrip(None))


def _probe_mask_placement() -> bool:
    """True when the installed labelme rounds and clips mask shapes (labelme >= 7.1)."""
    # Fractional corners, one column outside: current labelme puts the 2×2 bitmap at
    # the rounded corner (-1, 1) and keeps its right column; 6.x truncates and fails.
    bitmap = np.ones((2, 2), dtype=bool)
    text = annotation_text((4, 4), [shape("road", "mask", [[-1.0, 0.6], [0.0, 1.6]], None, bitmap)])
    try:
        cls = labelme_masks(text)[0]
    except (ValueError, IndexError):
        return False
    expected = np.zeros((4, 4), dtype=np.int32)
    expected[1:3, 0] = 1
    return bool(np.array_equal(cls, expected))


ROUND_JOINTS = _probe_linestrip_joints()
MASK_PLACEMENT = _probe_mask_placement()
LABELME_VERSION = getattr(labelme, "__version__", "?")
FEATURES = {
    "linestrip_joints": (
        ROUND_JOINTS,
        f"installed labelme {LABELME_VERSION} draws linestrips without rounded joints "
        "(before labelme 7.1); covered by the goldens in tests/data/parity",
    ),
    "mask_placement": (
        MASK_PLACEMENT,
        f"installed labelme {LABELME_VERSION} places mask shapes with truncated corners and "
        "no clipping (before labelme 7.1); covered by the goldens in tests/data/parity",
    ),
}


def skip_unless(*needs: str) -> None:
    """Skip when the installed labelme predates a behaviour the case depends on."""
    for need in needs:
        present, reason = FEATURES[need]
        if not present:
            pytest.skip(reason)


def test_the_old_behaviour_probe_agrees_with_pillow() -> None:
    # The probe tells joint/no-joint apart only if the two drawings differ.
    assert not np.array_equal(_draw_linestrip(None), _draw_linestrip("curve"))
    drawn = labelme_masks(annotation_text((20, 21), [shape("road", "linestrip", V_POINTS)]))[0]
    assert np.array_equal(drawn == 1, _draw_linestrip("curve")) is ROUND_JOINTS


# --- hand-written cases -----------------------------------------------------------------


@dataclass
class Case:
    """A named parity case: image size (H, W), shapes, and behaviours it depends on."""

    name: str
    size: tuple[int, int]
    shapes: list[dict[str, Any]]
    needs: tuple[str, ...] = ()


def rotated_rectangle(
    cx: float, cy: float, w: float, h: float, degrees: float
) -> list[list[float]]:
    """Four corners of a w×h rectangle centred at (cx, cy), rotated by ``degrees``."""
    a = math.radians(degrees)
    ux, uy, vx, vy = (
        math.cos(a) * w / 2,
        math.sin(a) * w / 2,
        -math.sin(a) * h / 2,
        math.cos(a) * h / 2,
    )
    return [
        [cx - ux - vx, cy - uy - vy],
        [cx + ux - vx, cy + uy - vy],
        [cx + ux + vx, cy + uy + vy],
        [cx - ux + vx, cy - uy + vy],
    ]


RING = np.ones((3, 3), dtype=bool)
RING[1, 1] = False
CHECKER = (np.indices((4, 5)).sum(axis=0) % 2).astype(bool)

CASES = [
    Case(
        "polygon_edges",
        (12, 16),
        [
            shape("road", "polygon", [[1, 1], [6, 2], [3, 6]]),
            shape("car", "polygon", [[8.6, 0.6], [14.4, 1.2], [10.2, 5.7]]),
            shape("road", "polygon", [[1, 8], [6, 11], [1, 11], [6, 8]]),  # bow tie
            shape("car", "polygon", [[9, 7], [15, 7], [15, 11], [12, 9], [9, 11]]),  # concave
        ],
    ),
    Case(
        "polygon_partly_outside",
        (10, 12),
        [
            shape("road", "polygon", [[-5, -4], [8, -2], [3, 6]]),
            shape("car", "polygon", [[9.5, 4.5], [20, 6], [10, 30]]),
        ],
    ),
    Case(
        "rectangle_corner_orders",
        (12, 14),
        [
            shape("road", "rectangle", [[1, 1], [4, 3]]),
            shape("car", "rectangle", [[9, 4], [6, 1]]),
            shape("road", "rectangle", [[1, 9], [4, 6]]),
            shape("car", "rectangle", [[12.7, 6.2], [6.4, 10.9]]),
            shape("road", "rectangle", [[13, 11], [13, 11]]),  # one pixel
            shape("car", "rectangle", [[-3, 10.5], [1.5, 20]]),  # partly outside
        ],
    ),
    Case(
        "circle",
        (16, 20),
        [
            shape("road", "circle", [[4, 4], [4, 7]]),
            shape("car", "circle", [[12.3, 5.6], [15.1, 8.9]]),
            shape("road", "circle", [[8, 12], [8, 12]]),  # radius 0
            shape("car", "circle", [[18, 14], [30, 17]]),  # partly outside
        ],
    ),
    Case(
        "line",
        (20, 24),
        [
            shape("road", "line", [[1, 4], [12, 4]]),
            shape("car", "line", [[2.5, 10.5], [20.3, 17.7]]),
            shape("road", "line", [[20, 2], [20, 2]]),  # zero length
            shape("car", "line", [[-5, 19], [30, 25]]),  # partly outside
        ],
    ),
    Case(
        "linestrip_two_points",
        (16, 18),
        [
            shape("road", "linestrip", [[2, 3], [15, 11]]),
            shape("car", "linestrip", [[1.5, 14.2], [16.6, 14.9]]),
        ],
    ),
    Case("linestrip_v", (20, 21), [shape("road", "linestrip", V_POINTS)], ("linestrip_joints",)),
    Case(
        "linestrip_zigzag_and_u_turn",
        (30, 40),
        [
            shape("road", "linestrip", [[2, 2], [10, 20], [18, 3], [26, 25], [35.5, 4.5]]),
            shape("car", "linestrip", [[5, 27], [30, 27], [6, 26]]),  # near U-turn
            shape("road", "linestrip", [[33, 12], [33, 12], [38, 20], [38, 20]]),  # repeats
            shape("car", "linestrip", [[20, 14], [24, 14], [28, 14]]),  # collinear
            shape("road", "linestrip", [[36, 26], [45, 34], [30, 40]]),  # partly outside
        ],
        ("linestrip_joints",),
    ),
    Case(
        "point",
        (16, 20),
        [
            shape("road", "point", [[6, 6]]),
            shape("car", "point", [[13.4, 6.7]]),
            shape("road", "point", [[0, 15]]),  # partly outside
            shape("car", "point", [[19.5, -2.5]]),
        ],
    ),
    Case(
        "oriented_rectangle",
        (20, 24),
        [
            shape("road", "oriented_rectangle", rotated_rectangle(7, 7, 10, 4, 30)),
            shape("car", "oriented_rectangle", rotated_rectangle(17.3, 12.1, 9.5, 5.2, -55)),
            shape("road", "oriented_rectangle", rotated_rectangle(22, 18, 8, 8, 45)),  # outside
        ],
    ),
    Case(
        "mask_integer_corners_exact_bitmap",
        (8, 10),
        [
            shape("road", "mask", [[1, 2], [5, 5]], bitmap=CHECKER),
            shape("car", "mask", [[6, 0], [8, 2]], bitmap=RING),
        ],
    ),
    Case(
        "mask_integer_corners_larger_bitmap_is_cropped",
        (8, 10),
        [shape("road", "mask", [[1, 2], [3, 3]], bitmap=CHECKER)],
        ("mask_placement",),
    ),
    Case(
        "mask_fractional_corners",
        (8, 10),
        [
            shape("road", "mask", [[0.6, 1.5], [4.2, 4.9]], bitmap=CHECKER),
            shape("car", "mask", [[6.5, 2.5], [8.4, 4.6]], bitmap=RING),  # ties to even
            shape("road", "mask", [[5.49, 5.51], [5.0, 5.0]], bitmap=RING),
        ],
        ("mask_placement",),
    ),
    Case(
        "mask_partly_outside",
        (6, 7),
        [
            shape("road", "mask", [[-1, -1], [1, 1]], bitmap=RING),
            shape("car", "mask", [[4.4, 3.6], [6.4, 5.6]], bitmap=CHECKER),
            shape("road", "mask", [[5, -2], [9, 1]], bitmap=CHECKER),
            shape("car", "mask", [[-2.2, 4.4], [1.0, 6.0]], bitmap=CHECKER),
        ],
        ("mask_placement",),
    ),
    Case(
        "mask_wholly_outside",
        (6, 7),
        [
            shape("road", "mask", [[7, 0], [9, 2]], bitmap=RING),
            shape("car", "mask", [[-4.2, 0.0], [-2.0, 1.0]], bitmap=RING),
            shape("road", "mask", [[0, 6.5], [2, 9]], bitmap=RING),
        ],
        ("mask_placement",),
    ),
    Case(
        "mask_reversed_integer_corners",
        (6, 7),
        # Corners in the wrong order span an empty box: labelme draws nothing.
        [
            shape("road", "mask", [[3, 3], [1, 1]], bitmap=RING),
            shape("car", "mask", [[0, 4], [5, 2]], bitmap=np.ones((1, 1), dtype=bool)),
        ],
        ("mask_placement",),
    ),
    Case(
        "painters_order_and_instances",
        (12, 16),
        [
            shape("road", "rectangle", [[0, 0], [9, 7]], group_id=1),
            shape("car", "polygon", [[4, 2], [13, 3], [8, 10]], group_id=1),
            shape("road", "circle", [[12, 8], [14, 10]], group_id=1),  # joins the first
            shape("car", "point", [[3, 9]]),
            shape("__ignore__", "rectangle", [[6, 4], [8, 6]]),
            shape("_background_", "line", [[0, 11], [15, 11]]),
            shape("car", "rectangle", [[14, 0], [15, 2]], group_id=1),
            shape("car", "rectangle", [[11, 0], [12, 1]]),
        ],
    ),
    Case(
        "touching_objects",
        (10, 14),
        [
            shape("road", "polygon", [[0, 0], [6, 0], [6, 9], [0, 9]]),
            shape("car", "polygon", [[6, 0], [13, 0], [13, 9], [6, 9]]),  # shares an edge
            shape("road", "rectangle", [[3, 3], [6, 6]], group_id=4),
            shape("road", "rectangle", [[7, 3], [10, 6]], group_id=4),
        ],
    ),
    Case(
        "negative_group_ids",
        (1, 8),
        [
            shape("road", "rectangle", [[0, 0], [0, 0]]),
            shape("road", "rectangle", [[1, 0], [1, 0]], group_id=-1),
            shape("road", "rectangle", [[2, 0], [2, 0]], group_id=5),
            shape("road", "rectangle", [[3, 0], [3, 0]]),
            shape("road", "rectangle", [[4, 0], [4, 0]], group_id=-3),
            shape("road", "rectangle", [[5, 0], [5, 0]], group_id=-1),
        ],
    ),
    Case(
        "many_shapes_wide_instances",
        (16, 20),
        [
            *[
                shape("road", "rectangle", [[i % 20, i // 20], [i % 20, i // 20]])
                for i in range(298)
            ],
            shape("__ignore__", "point", [[10, 14]]),
            shape("car", "polygon", [[0, 0], [5, 0], [0, 5]], group_id=2),
        ],
    ),
    Case(
        "many_shapes_one_instance",
        (16, 20),
        [shape("car", "point", [[i % 20, i // 20 - 3]], group_id=9) for i in range(290)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hand_written_case_matches_labelme(case: Case) -> None:
    skip_unless(*case.needs)
    assert_parity(case.size, case.shapes)


# --- random cases -----------------------------------------------------------------------

COORDINATES = st.one_of(
    st.integers(-8, 36),  # written as JSON integers
    st.integers(-16, 72).map(lambda v: v / 2),  # halves: rounding ties
    st.floats(-8, 36, allow_nan=False, allow_infinity=False),
)
POINTS = st.lists(COORDINATES, min_size=2, max_size=2)
SHAPE_TYPES = (
    "polygon",
    "rectangle",
    "circle",
    "line",
    "linestrip",
    "point",
    "oriented_rectangle",
    "mask",
)
GROUP_IDS = st.one_of(st.none(), st.integers(-2, 3))


@st.composite
def mask_shape(draw: st.DrawFn, size: tuple[int, int], *, current: bool) -> tuple[list, NDArray]:
    """Corner points and bitmap of a mask shape that the chosen labelme handles."""
    height, width = size
    if not current:
        # 6.x: box inside the image, bitmap of its exact size, corners truncated (so a
        # fraction below one half changes nothing).
        y1, y2 = sorted(draw(st.lists(st.integers(0, height - 1), min_size=2, max_size=2)))
        x1, x2 = sorted(draw(st.lists(st.integers(0, width - 1), min_size=2, max_size=2)))
        bitmap = draw(hnp.arrays(np.bool_, (y2 - y1 + 1, x2 - x1 + 1)))
        fraction = draw(st.sampled_from([0.0, 0.25, 0.49]))
        return [[x1 + fraction, y1 + fraction], [x2 + fraction, y2 + fraction]], bitmap
    bitmap = draw(hnp.arrays(np.bool_, (draw(st.integers(1, 8)), draw(st.integers(1, 8)))))
    x1, y1 = draw(st.integers(-6, width + 2)), draw(st.integers(-6, height + 2))
    kind = draw(st.sampled_from(["integer", "fractional", "reversed"]))
    if kind == "integer":  # a box no larger than the bitmap, which crops it
        box_h = draw(st.integers(1, bitmap.shape[0]))
        box_w = draw(st.integers(1, bitmap.shape[1]))
        return [[x1, y1], [x1 + box_w - 1, y1 + box_h - 1]], bitmap
    if kind == "reversed":  # the far corner above or left of the first: an empty box
        dx, dy = draw(st.integers(-3, 9)), draw(st.integers(-3, 9))
        if dx >= 0 and dy >= 0:
            dx = -1 - dx % 4
        return [[x1, y1], [x1 + dx, y1 + dy]], bitmap
    x1f = x1 + draw(st.floats(0.01, 0.99))
    y1f = y1 + draw(st.sampled_from([0.0, 0.3, 0.5, 0.7]))
    far = draw(st.sampled_from([0.0, 0.5, 1.0]))  # the far corner is not used
    return [[x1f, y1f], [x1f + bitmap.shape[1] - far, y1f + bitmap.shape[0] - far]], bitmap


@st.composite
def random_case(draw: st.DrawFn, *, current: bool) -> tuple[tuple[int, int], list]:
    """An image size and a list of shapes of every type for the chosen labelme."""
    size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    shapes = []
    for _ in range(draw(st.integers(1, 8))):
        shape_type = draw(st.sampled_from(SHAPE_TYPES))
        label = draw(st.sampled_from(LABELS))
        group_id = draw(GROUP_IDS)
        count = {"polygon": (3, 7), "linestrip": (2, 6 if current else 2), "point": (1, 1)}
        low, high = count.get(shape_type, (4, 4) if shape_type == "oriented_rectangle" else (2, 2))
        if shape_type == "mask":
            points, bitmap = draw(mask_shape(size, current=current))
            shapes.append(shape(label, "mask", points, group_id, bitmap))
        else:
            points = draw(st.lists(POINTS, min_size=low, max_size=high))
            shapes.append(shape(label, shape_type, points, group_id))
    return size, shapes


RANDOM_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@RANDOM_SETTINGS
@given(random_case(current=False))
def test_random_shapes_match_labelme(case: tuple[tuple[int, int], list]) -> None:
    """Every shape type, with the linestrips and masks every labelme draws alike."""
    assert_parity(*case)


@RANDOM_SETTINGS
@given(random_case(current=True))
def test_random_shapes_match_current_labelme(case: tuple[tuple[int, int], list]) -> None:
    """Also linestrips of 3+ points and masks rounded, cropped or clipped (labelme >= 7.1)."""
    skip_unless("linestrip_joints", "mask_placement")
    assert_parity(*case)
