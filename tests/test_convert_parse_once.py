"""``segkit convert`` parses each labelme file once: in one pass (``--labels`` into a new
folder), or in the label scan, whose parse the conversion reuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers_convert import add_sample, labelme_doc, mask_shape, shape, tree_hashes, write_json
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit.convert_one
import segkit.convert_stage
from segkit._io import sha256_bytes
from segkit.convert_one import Parsed
from segkit.convert_stage import convert
from segkit.errors import AnnotationError
from segkit.labelme import Annotation, parse_annotation


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"scan": 0, "convert": 0}

    def counting(where: str) -> Callable[[Path, bytes], Annotation]:
        def parse(path: Path, raw: bytes) -> Annotation:
            counts[where] += 1
            return parse_annotation(path, raw)

        return parse

    monkeypatch.setattr(segkit.convert_stage, "parse_annotation", counting("scan"))
    monkeypatch.setattr(segkit.convert_one, "parse_annotation", counting("convert"))
    return counts


@pytest.mark.parametrize(
    ("labels", "rerun", "expected"),
    [
        ("cat,dog", False, {"scan": 0, "convert": 3}),  # one pass
        (None, False, {"scan": 3, "convert": 0}),  # discovered: scan, parse handed on
        ("cat,dog", True, {"scan": 3, "convert": 0}),  # into a dataset: scan first
    ],
    ids=["given", "discovered", "given-rerun"],
)
def test_each_file_is_parsed_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    labels: str | None,
    rerun: bool,
    expected: dict[str, int],
) -> None:
    for name in ("a", "b", "c"):
        add_sample(tmp_path / "in", name, [shape("cat", "polygon", [[1, 1], [9, 2], [5, 8]])])
    if rerun:
        convert(tmp_path / "in", tmp_path / "out", labels=labels, workers=1, viz=True)
    counts = _count_parses(monkeypatch)
    summary = convert(tmp_path / "in", tmp_path / "out", labels=labels, workers=1)
    assert summary.converted == 3 and not summary.failures
    assert counts == expected


def test_same_outputs_as_parsing_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        add_sample(
            tmp_path / "in",
            name,
            [
                shape("cat", "polygon", [[1, 1], [20, 2], [12, 18]]),
                shape("dog", "circle", [[15, 10], [19, 12]], group_id=3),
            ],
        )
    # Discovered labels take two passes (ids need every file); sorted, they are cat, dog.
    convert(tmp_path / "in", tmp_path / "handed_on", workers=1)
    convert(tmp_path / "in", tmp_path / "one_pass", labels="cat,dog", workers=1)
    monkeypatch.setattr(segkit.convert_stage, "_PARSED_BUDGET", -1)  # nothing handed on
    counts = _count_parses(monkeypatch)
    convert(tmp_path / "in", tmp_path / "twice", workers=1)
    assert counts == {"scan": 2, "convert": 2}
    trees = [tree_hashes(tmp_path / name) for name in ("handed_on", "one_pass", "twice")]
    manifests = {"segkit.json"}
    outputs = [{k: v for k, v in tree.items() if k not in manifests} for tree in trees]
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_file_changed_after_the_scan_is_parsed_again(tmp_path: Path) -> None:
    path = add_sample(tmp_path / "in", "a", [shape("cat", "point", [[3, 3]])])
    raw = path.read_bytes()
    parsed = Parsed.of(parse_annotation(path, raw), raw)
    assert parsed is not None
    assert parsed.annotation(raw, sha256_bytes(raw)) == parse_annotation(path, raw)
    changed = raw.replace(b"cat", b"dog")
    assert parsed.annotation(changed, sha256_bytes(changed)) is None


def test_embedded_images_are_not_handed_on(tmp_path: Path) -> None:
    doc = labelme_doc(
        [shape("cat", "point", [[3, 3]])], image_path=None, size=None, image_data=b"\xff\xd8"
    )
    path = write_json(tmp_path / "x.json", doc)
    raw = path.read_bytes()
    assert Parsed.of(parse_annotation(path, raw), raw) is None


_COORDINATE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53)
)
_SHAPE = st.builds(
    lambda label, kind, points, group: shape(label, kind, points, group_id=group),
    st.text(min_size=1).filter(lambda text: text.strip() and len(text.strip().splitlines()) == 1),
    st.sampled_from(["polygon", "linestrip", None]),
    st.lists(st.lists(_COORDINATE, min_size=2, max_size=2), min_size=3, max_size=8),
    st.one_of(st.none(), st.integers(-(2**70), 2**70)),
)


@settings(max_examples=60, deadline=None)
@given(shapes=st.lists(_SHAPE, max_size=5), height=st.one_of(st.none(), st.integers(1, 9999)))
def test_the_handed_on_annotation_equals_the_parse(
    tmp_path_factory: pytest.TempPathFactory, shapes: list, height: int | None
) -> None:
    """What the scan hands on (marshal of plain fields) reads back as the very same parse."""
    doc = labelme_doc(shapes, image_path="x.jpg", size=None if height is None else (height, 7))
    path = write_json(tmp_path_factory.mktemp("h") / "x.json", doc)
    raw = path.read_bytes()
    try:
        expected = parse_annotation(path, raw)
    except AnnotationError:  # a label surrogate or the like: nothing is handed on then
        return
    parsed = Parsed.of(expected, raw)
    assert parsed is not None and not parsed.pickled
    again = parsed.annotation(raw, sha256_bytes(raw))
    assert again == expected
    assert [[type(v) for p in s.points for v in p] for s in again.shapes] == [
        [float] * 2 * len(s.points) for s in expected.shapes
    ]


def test_a_mask_shape_is_handed_on_with_its_bitmap(tmp_path: Path) -> None:
    bitmap = np.eye(4, dtype=bool)
    shapes = [mask_shape("cat", [[1, 1], [4, 4]], bitmap), shape("dog", "point", [[2, 3]])]
    doc = labelme_doc(shapes, image_path="x.jpg", size=(8, 8))
    path = write_json(tmp_path / "x.json", doc)
    raw = path.read_bytes()
    parsed = Parsed.of(parse_annotation(path, raw), raw)
    assert parsed is not None and parsed.pickled
    again = parsed.annotation(raw, sha256_bytes(raw))
    assert again is not None
    assert (
        np.array_equal(again.shapes[0].mask, bitmap)
        and again.shapes[1:] == (parse_annotation(path, raw).shapes[1:])
    )
