"""The class mask derived from the instance canvas equals the class mask drawn directly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit.rasterize
from segkit.labelme import Shape
from segkit.rasterize import _paint, rasterize

IDS = {"_background_": 0, "cat": 1, "dog": 2, "tree": 7, "__ignore__": 255}
_coordinate = st.floats(-10, 70, allow_nan=False).map(lambda v: round(v, 2))


@st.composite
def shapes(draw: st.DrawFn) -> list[Shape]:
    result = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["polygon", "rectangle", "circle", "line", "point"]))
        count = {"polygon": draw(st.integers(3, 12)), "point": 1}.get(kind, 2)
        points = tuple(draw(st.tuples(_coordinate, _coordinate)) for _ in range(count))
        group = draw(st.one_of(st.none(), st.integers(-2, 3)))
        result.append(Shape(draw(st.sampled_from(sorted(IDS))), kind, points, group))
    return result


def _drawn_directly(found: list[Shape], size: tuple[int, int]) -> np.ndarray:
    return np.asarray(_paint(found, size, [IDS[s.label] for s in found], "L", ""))


@given(shapes(), st.sampled_from([(48, 64), (9, 5), (1, 30)]))
@settings(max_examples=60, deadline=None)
def test_derived_class_mask_and_counts_match_drawing_it(found: list[Shape], size: tuple) -> None:
    masks = rasterize(found, size, IDS)
    expected = _drawn_directly(found, size)
    assert np.array_equal(masks.class_mask, expected)
    assert np.array_equal(masks.class_counts, np.bincount(expected.ravel(), minlength=256))


def test_shapes_are_drawn_once_for_8_bit_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = segkit.rasterize._paint
    monkeypatch.setattr(segkit.rasterize, "_paint", lambda *a: calls.append(a[3]) or real(*a))
    found = [
        Shape("cat", "polygon", ((2.0, 2.0), (60.0, 5.0), (30.0, 40.0))),
        Shape("dog", "circle", ((20.0, 20.0), (30.0, 20.0)), 1),
        Shape("__ignore__", "rectangle", ((40.0, 30.0), (50.0, 45.0))),
        Shape("_background_", "rectangle", ((0.0, 0.0), (10.0, 10.0))),
    ]
    masks = rasterize(found, (48, 64), IDS)
    assert calls == ["L"]  # the instance canvas only
    assert np.array_equal(masks.class_mask, _drawn_directly(found, (48, 64)))
    assert set(np.unique(masks.class_mask)) == {0, 1, 2, 255}


def test_16_bit_ids_draw_the_class_mask_directly() -> None:
    found = [Shape("cat", "point", ((float(i % 40), float(i // 40)),)) for i in range(300)]
    masks = rasterize(found, (10, 40), IDS)
    assert masks.instance_image.mode == "I;16"
    assert np.array_equal(masks.class_mask, _drawn_directly(found, (10, 40)))
