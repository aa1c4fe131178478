"""Fuzzing the labelme reader and the rasterizer: a result or one AnnotationError line."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import PIL.Image
from helpers_convert import encode, labelme_doc, mask_shape, shape
from helpers_fuzz import FUZZ, json_values, mutate, result_or_segkit_error
from hypothesis import given
from hypothesis import strategies as st

from segkit.errors import AnnotationError
from segkit.labelme import (
    SHAPE_TYPES,
    Annotation,
    Shape,
    check_extent,
    load_image,
    parse_annotation,
    scan_labels,
)
from segkit.rasterize import rasterize

PATH = Path("fuzz.json")
TINY_PNG = encode(PIL.Image.new("RGB", (6, 5), (10, 20, 30)), "PNG")
VALID = labelme_doc(
    [
        shape("cat", "polygon", [[1, 1], [5, 1], [3, 4]], group_id=1),
        shape("dog", "rectangle", [[0, 0], [2, 2]]),
        shape("cat", "circle", [[3, 3], [4, 4]]),
        shape("cat", "linestrip", [[0, 4], [5, 0], [5, 4]]),
        shape("dog", "point", [[2, 2]]),
        mask_shape("dog", [[1, 1], [3, 3]], np.eye(3, dtype=bool)),
    ],
    image_path="fuzz.png",
    size=(5, 6),
)


def _parse(text: str | bytes) -> Annotation | AnnotationError:
    outcome = result_or_segkit_error(lambda: parse_annotation(PATH, text))
    assert isinstance(outcome, Annotation | AnnotationError)
    if isinstance(outcome, AnnotationError):
        assert str(outcome).startswith(f"{PATH}: ")
    return outcome


def _draw(annotation: Annotation, size: tuple[int, int]) -> None:
    """What convert does with a parsed file: check the extent, then rasterize."""

    def run() -> None:
        check_extent(annotation.shapes, size, f"{PATH}: ")
        labels = {s.label: index + 1 for index, s in enumerate(annotation.shapes)}
        result = rasterize(annotation.shapes, size, {k: v % 255 for k, v in labels.items()})
        assert result.class_mask.shape == size

    outcome = result_or_segkit_error(run)
    assert outcome is None or isinstance(outcome, AnnotationError)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes(raw: bytes) -> None:
    _parse(raw)
    result_or_segkit_error(lambda: scan_labels(PATH, raw))


@FUZZ
@given(json_values)
def test_any_json_value(value: object) -> None:
    _parse(json.dumps(value))


@FUZZ
@given(st.data())
def test_valid_file_with_one_field_changed(data: st.DataObject) -> None:
    """A labelme file with one field (at any depth) replaced: parsed and drawn, or refused."""
    text = json.dumps(mutate(VALID, data))
    labels = result_or_segkit_error(lambda: scan_labels(PATH, text))
    annotation = _parse(text)
    if isinstance(annotation, Annotation):
        assert isinstance(labels, list)
        assert {s.label for s in annotation.shapes} <= set(labels)
        _draw(annotation, (5, 6))


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_any_image_bytes(raw: bytes, from_png: bool) -> None:
    """imageData of any bytes (or a PNG with a tail cut or changed) loads or is refused."""
    if from_png and raw:
        cut = len(raw) % len(TINY_PNG)
        raw = TINY_PNG[:cut] + raw[: len(TINY_PNG) - cut]
    doc = {**VALID, "imageData": base64.b64encode(raw).decode(), "imagePath": None}
    annotation = _parse(json.dumps(doc))
    assert isinstance(annotation, Annotation)
    outcome = result_or_segkit_error(lambda: load_image(annotation))
    assert not isinstance(outcome, Exception) or isinstance(outcome, AnnotationError)


coordinates = st.floats(min_value=-2000, max_value=2000, allow_nan=False)
points = st.lists(st.tuples(coordinates, coordinates), min_size=1, max_size=6)


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    """Any shape the reader lets through: a known type with its point count."""
    shape_type = draw(st.sampled_from(SHAPE_TYPES))
    count = {"polygon": 3, "linestrip": 2, "point": 1, "oriented_rectangle": 4}.get(shape_type, 2)
    pts = draw(points.filter(lambda p: len(p) >= count))
    if shape_type not in ("polygon", "linestrip"):
        pts = pts[:count]
    mask = None
    if shape_type == "mask":
        mask = draw(st.lists(st.booleans(), min_size=1, max_size=30)).copy()
        width = draw(st.integers(1, len(mask)))
        mask = np.array(mask[: len(mask) // width * width], bool).reshape(-1, width)
    label = draw(st.sampled_from(["a", "b", "__ignore__", "_background_"]))
    group = draw(st.none() | st.integers(-5, 300))
    return Shape(label, shape_type, tuple(pts), group, mask)


@FUZZ
@given(st.lists(shapes(), max_size=5), st.integers(1, 9), st.integers(1, 9))
def test_rasterize_any_shapes(shape_list: list[Shape], height: int, width: int) -> None:
    """Any valid shapes, anywhere (near or far outside): a mask of the image size, or one line."""
    ids = {"_background_": 0, "a": 1, "b": 2, "__ignore__": 255}

    def run() -> None:
        check_extent(shape_list, (height, width))
        result = rasterize(shape_list, (height, width), ids)
        assert result.class_mask.shape == (height, width)
        assert set(np.unique(result.class_mask)) <= {0, 1, 2, 255}

    outcome = result_or_segkit_error(run)
    assert outcome is None or isinstance(outcome, AnnotationError)
