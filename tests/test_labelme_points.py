"""The at-once point checks of ``segkit.labelme`` against the point-by-point checks they replaced.

``_old_parse_points`` is the implementation before the fast path, kept here as the
oracle: for every points list, random or malformed, the new parser must accept the
same lists with the same floats and reject the others with the same message.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.errors import AnnotationError
from segkit.labelme import _SHORT, _parse_points, parse_annotation

_NUMBER_TYPES = (int, float)


def _old_parse_points(path: Path, where: str, raw: Any) -> tuple[tuple[float, float], ...]:
    """segkit's point parser before the fast path (the oracle); points in messages are
    shortened as segkit shortens them (``_SHORT``, added since by the corpus work)."""
    if not isinstance(raw, list) or not raw:
        raise AnnotationError(f"{path}: {where}'points' must be a non-empty list of [x, y]")
    points = []
    for index, point in enumerate(raw):
        if (
            type(point) is not list
            or len(point) != 2
            or type(point[0]) not in _NUMBER_TYPES
            or type(point[1]) not in _NUMBER_TYPES
        ):
            raise AnnotationError(
                f"{path}: {where}points[{index}] must be [x, y] numbers, got {_SHORT.repr(point)}"
            )
        try:
            x, y = float(point[0]), float(point[1])
        except OverflowError:
            x = y = math.inf
        if not (math.isfinite(x) and math.isfinite(y)):
            raise AnnotationError(
                f"{path}: {where}points[{index}] is not finite: {_SHORT.repr(point)}"
            )
        points.append((x, y))
    return tuple(points)


def _outcome(parse: Any, raw: Any) -> tuple[str, Any]:
    try:
        points = parse(Path("x.json"), "shapes[0]: ", raw)
    except AnnotationError as error:
        return "rejected", str(error)
    # Compare types too: the old parser always made floats.
    return "accepted", [(type(x), x, type(y), y) for x, y in points]


_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e4, 1e4),
    st.integers(-(10**6), 10**6),
    st.integers(min_value=-(10**400), max_value=10**400),  # beyond a float's range too
    st.sampled_from([1e308, -1e308, 2**1024, -(2**1024), 0, -0.0, True, False]),
)
_odd = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.just({}), st.just([]))
_good_point = st.lists(
    st.one_of(st.floats(-1e4, 1e4), st.integers(-(10**4), 10**4)), min_size=2, max_size=2
)
_any_point = st.one_of(
    _good_point,
    st.lists(st.one_of(_numbers, _odd), min_size=0, max_size=3),
    _numbers,
    _odd,
)


@given(st.lists(_good_point, min_size=1, max_size=40))
@settings(max_examples=150, deadline=None)
def test_well_formed_points_parse_as_before(raw: list) -> None:
    assert _outcome(_parse_points, raw) == _outcome(_old_parse_points, raw)


@given(
    st.one_of(
        st.lists(_any_point, min_size=0, max_size=8),
        st.lists(_good_point, min_size=1, max_size=8).flatmap(
            lambda good: st.tuples(st.integers(0, len(good)), _any_point).map(
                lambda spot: [*good[: spot[0]], spot[1], *good[spot[0] :]]
            )
        ),
        _odd,
        _numbers,
    )
)
@settings(max_examples=250, deadline=None)
def test_malformed_points_get_the_same_decision_and_message(raw: Any) -> None:
    assert _outcome(_parse_points, raw) == _outcome(_old_parse_points, raw)


@pytest.mark.parametrize(
    "points",
    [
        [[1.5, 2.5], [1e308, 1e308], [1e308, 1e308]],  # finite points whose sum overflows
        [[1, 2], [10**400, 3]],  # an int too large for a float
        [[10**308, 10**308], [10**308, 1]],  # ints that fit a float, their sum does not
        [[1.0, 2.0], [True, 3.0]],  # bool is not a number here
        [[1.0, 2.0], [float("inf"), float("-inf")]],  # inf - inf = nan in a sum
        [[1.0, 2.0], [3.0, 4.0, 5.0]],
        [[1.0, 2.0], (3.0, 4.0)],
        [[0, -0.0], [5, 6]],  # ints become floats
    ],
)
def test_edge_cases_match_the_old_parser(points: list) -> None:
    assert _outcome(_parse_points, points) == _outcome(_old_parse_points, points)


def test_json_literals_nan_and_infinity_are_rejected_as_before(tmp_path: Path) -> None:
    text = (
        '{"imagePath": "x.png", "shapes": [{"label": "a", "points": [[1, 2], [NaN, 3], [4, 5]]}]}'
    )
    with pytest.raises(AnnotationError, match=r"points\[1\] is not finite: \[nan, 3\]"):
        parse_annotation(tmp_path / "x.json", text)
    doc = json.loads(text.replace("NaN", "Infinity"))
    assert _outcome(_parse_points, doc["shapes"][0]["points"]) == _outcome(
        _old_parse_points, doc["shapes"][0]["points"]
    )
