"""labelme.py: JSON checks and image loading in the labelme app's display frame."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest
from helpers_convert import (
    INVERSE_ORIENTATION,
    encode,
    exif_bytes,
    gradient,
    labelme_doc,
    shape,
    write_json,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.errors import AnnotationError
from segkit.labelme import (
    Shape,
    check_extent,
    exif_orientation,
    load_image,
    parse_annotation,
    read_annotation,
    read_image_header,
    scan_labels,
)

GOOD_SHAPE = shape("cat", "rectangle", [[1, 1], [4, 4]])


def parse(doc: object) -> None:
    parse_annotation(Path("x.json"), json.dumps(doc))


def doc_with(*shapes: dict) -> dict:
    return labelme_doc(list(shapes), image_path="x.jpg", size=(8, 8))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"shapes": [}', r"x\.json: not valid JSON"),
        ('{"shapes": [], "imagePath": "x.jp', r"not valid JSON"),
        ("[1, 2]", r"not a labelme file \(top level is a list\)"),
        ('{"imagePath": "x.jpg"}', r"no 'shapes' list"),
        ('{"shapes": []}', r"no 'imagePath' or 'imageData'"),
        ('{"shapes": [], "imagePath": ""}', r"neither 'imageData' nor 'imagePath'"),
        ('{"shapes": [], "imagePath": 3}', r"'imagePath' must be a string"),
        (
            '{"shapes": [], "imagePath": "caf\\udce9.jpg"}',
            r"'imagePath' 'caf\\udce9\.jpg' contains an unpaired",
        ),
        ('{"shapes": [], "imageData": "@@@@"}', r"'imageData' is not valid base64"),
        ('{"shapes": [], "imagePath": "a", "imageHeight": "5"}', r"'imageHeight' must be"),
        ('{"shapes": [], "imagePath": "a", "imageWidth": 0}', r"'imageWidth' must be"),
        # Python's json accepts these literals; they are not coordinates.
        ("[" * 100_000 + "]" * 100_000, r"not valid JSON"),
        ('{"shapes": [], "imagePath": "a", "n": ' + "9" * 5000 + "}", r"not valid JSON"),
    ],
)
def test_document_defects(text: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        parse_annotation(Path("x.json"), text)


def test_not_utf8_says_so() -> None:
    raw = json.dumps(doc_with(shape("gato", "point", [[1, 1]]))).replace("gato", "gató")
    with pytest.raises(AnnotationError, match="not UTF-8"):
        parse_annotation(Path("x.json"), raw.encode("latin-1"))


@pytest.mark.parametrize(
    ("bad_shape", "message"),
    [
        ("not a shape", r"shapes\[1\]: shape must be an object"),
        (shape(7, "point", [[1, 1]]), r"shapes\[1\]: 'label' must be a non-empty string"),  # type: ignore[arg-type]
        (shape("  ", "point", [[1, 1]]), r"'label' must be a non-empty string"),
        (shape("a\nb", "point", [[1, 1]]), r"contains a line break"),
        (shape("a", "hexagon", [[1, 1]]), r"shapes\[1\]: unknown shape_type 'hexagon'"),
        (
            shape("a", ["polygon"], [[1, 1]]),
            r"shapes\[1\]: 'shape_type' must be a string or null, got \['polygon'\]",
        ),  # type: ignore[arg-type]
        # Only a missing or null shape_type means polygon (labelme < 4), not any falsy value.
        (shape("a", 0, [[1, 1]]), r"shapes\[1\]: 'shape_type' must be a string or null, got 0"),  # type: ignore[arg-type]
        (
            shape("a", False, [[1, 1]]),
            r"shapes\[1\]: 'shape_type' must be a string or null, got False",
        ),  # type: ignore[arg-type]
        (shape("a", [], [[1, 1]]), r"shapes\[1\]: 'shape_type' must be a string or null, got \[\]"),  # type: ignore[arg-type]
        (shape("a", {}, [[1, 1]]), r"shapes\[1\]: 'shape_type' must be a string or null, got \{\}"),  # type: ignore[arg-type]
        (shape("a", "", [[1, 1], [2, 2], [3, 1]]), r"shapes\[1\]: unknown shape_type ''"),
        (
            shape("cat\ud800", "point", [[1, 1]]),
            r"shapes\[1\]: 'label' 'cat\\ud800' contains an unpaired surrogate",
        ),
        (shape("a", "point", [["1", 2]]), r"points\[0\] must be \[x, y\] numbers"),
        (shape("a", "point", [[True, 2]]), r"points\[0\] must be \[x, y\] numbers"),
        (shape("a", "point", [[1, 2, 3]]), r"points\[0\] must be \[x, y\] numbers"),
        (shape("a", "point", []), r"'points' must be a non-empty list"),
        (shape("a", "point", [[float("nan"), 1]]), r"points\[0\] is not finite"),
        (shape("a", "point", [[1, float("inf")]]), r"points\[0\] is not finite"),
        (shape("a", "point", [[10**400, 1]]), r"points\[0\] is not finite"),
        (shape("a", "polygon", [[1, 1], [2, 2]]), r"polygon needs at least 3 points, got 2"),
        (shape("a", "rectangle", [[1, 1]]), r"rectangle needs exactly 2 points, got 1"),
        (shape("a", "circle", [[1, 1], [2, 2], [3, 3]]), r"circle needs exactly 2 points"),
        (shape("a", "line", [[1, 1]]), r"line needs exactly 2 points"),
        (shape("a", "linestrip", [[1, 1]]), r"linestrip needs at least 2 points"),
        (shape("a", "point", [[1, 1], [2, 2]]), r"point needs exactly 1 points"),
        (shape("a", "oriented_rectangle", [[1, 1], [2, 2], [3, 3]]), r"needs exactly 4"),
        (shape("a", "point", [[1, 1]], group_id="1"), r"'group_id' must be an integer"),
        (shape("a", "point", [[1, 1]], group_id=1.5), r"'group_id' must be an integer"),
        (shape("a", "mask", [[1, 1], [2, 2]]), r"mask shape needs 'mask'"),
        (shape("a", "mask", [[1, 1], [2, 2]], mask="%%%"), r"'mask' is not valid base64"),
        (
            shape("a", "mask", [[1, 1], [2, 2]], mask=base64.b64encode(b"junk").decode()),
            r"'mask' is not a valid PNG bitmap",
        ),
        (
            shape(
                "a",
                "mask",
                [[1, 1], [2, 2]],
                mask=base64.b64encode(encode(gradient(2, 2), "PNG")).decode(),
            ),
            r"single-channel",
        ),
    ],
)
def test_shape_defects_name_the_shape(bad_shape: object, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        parse(doc_with(GOOD_SHAPE, bad_shape))  # type: ignore[arg-type]


def test_lenient_where_labelme_is() -> None:
    wrapped = base64.encodebytes(encode(gradient(8, 8), "PNG")).decode()  # MIME line breaks
    doc = labelme_doc(
        [
            {"label": " cat ", "points": [[1, 1], [2, 2], [3, 1]]},  # labelme < 4: no type
            {"label": "cow", "points": [[1, 1], [2, 2], [3, 1]], "shape_type": None},
            shape("dog", "point", [[1, 1]], group_id=None),
        ],
        image_path="..\\images\\x.jpg",
        size=(8, 8),
    )
    doc["imageData"] = wrapped
    doc["imageHeight"], doc["imageWidth"] = 8.0, 8.0
    annotation = parse_annotation(Path("a/x.json"), json.dumps(doc))
    assert [(s.label, s.shape_type) for s in annotation.shapes] == [
        ("cat", "polygon"),
        ("cow", "polygon"),
        ("dog", "point"),
    ]
    assert annotation.image_path == "../images/x.jpg"
    assert (annotation.image_height, annotation.image_width) == (8, 8)
    assert annotation.image_data == base64.b64decode(wrapped)


def test_labels_with_surrogates_are_left_out_of_the_label_scan() -> None:
    # The fast scan never offers such a label as a class; parse_annotation reports it.
    doc = doc_with(shape("cat\ud800", "point", [[1, 1]]), shape("dog", "point", [[1, 1]]))
    assert scan_labels(Path("x.json"), json.dumps(doc)) == ["dog"]


def test_read_annotation_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="cannot read"):
        read_annotation(tmp_path / "nope.json")


def _stored(oriented: PIL.Image.Image, orientation: int) -> PIL.Image.Image:
    for op in INVERSE_ORIENTATION.get(orientation, ()):
        oriented = oriented.transpose(op)
    return oriented


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_frame_matches_exif_transpose(tmp_path: Path, orientation: int, fmt: str) -> None:
    oriented = gradient(20, 12)
    data = encode(_stored(oriented, orientation), fmt, exif=exif_bytes(orientation), quality=95)
    (tmp_path / "x.img").write_bytes(data)
    doc = labelme_doc([], image_path="x.img", size=(12, 20))
    loaded = load_image(parse_annotation(tmp_path / "x.json", json.dumps(doc)))
    expected = PIL.ImageOps.exif_transpose(PIL.Image.open(tmp_path / "x.img"))
    assert loaded.size == (12, 20)
    assert loaded.needs_reorient == (orientation != 1)
    np.testing.assert_array_equal(np.asarray(loaded.image), np.asarray(expected))


@pytest.mark.parametrize(
    ("mode", "turned"),
    [("RGB", True), ("L", True), ("RGBA", True), ("I;16", False), ("F", False)],
)
def test_tiff_orientation_as_labelme_reads_tiff(tmp_path: Path, mode: str, turned: bool) -> None:
    # labelme 6 opens 8-bit TIFFs with Pillow, which turns them by their orientation tag
    # on load; 16-bit and float TIFFs go through tifffile, which ignores the tag.
    values = np.arange(12 * 20, dtype=np.float64).reshape(12, 20) * 250
    stored = (
        gradient(20, 12, mode)
        if mode in ("RGB", "L", "RGBA")
        else PIL.Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.float32))
    )
    stored.save(tmp_path / "x.tif", tiffinfo={0x0112: 6})
    with PIL.Image.open(tmp_path / "x.tif") as image:
        assert exif_orientation(image) == 1  # no _getexif: labelme's own rotation skips TIFF
    expected = stored.transpose(PIL.Image.Transpose.ROTATE_270) if turned else stored
    size = (expected.height, expected.width)
    doc = labelme_doc([], image_path="x.tif", size=size)
    loaded = load_image(parse_annotation(tmp_path / "x.json", json.dumps(doc)))
    assert loaded.size == size == read_image_header(tmp_path / "x.tif")
    assert loaded.needs_reorient == turned
    np.testing.assert_array_equal(np.asarray(loaded.image), np.asarray(expected))


def test_tiff_image_data_is_turned_as_qt_shows_it(tmp_path: Path) -> None:
    stored = gradient(20, 12)
    data = encode(stored, "TIFF", tiffinfo={0x0112: 6})
    doc = labelme_doc([], image_path="gone.tif", size=(20, 12), image_data=data)
    loaded = load_image(parse_annotation(tmp_path / "x.json", json.dumps(doc)))
    np.testing.assert_array_equal(
        np.asarray(loaded.image), np.asarray(stored.transpose(PIL.Image.Transpose.ROTATE_270))
    )


def test_xmp_only_orientation_is_ignored_as_labelme_does(tmp_path: Path) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>6</tiff:Orientation></x:xmpmeta>'
    gradient(20, 12).save(tmp_path / "x.jpg", xmp=xmp)
    with PIL.Image.open(tmp_path / "x.jpg") as image:
        assert image.getexif().get(0x0112) == 6  # Pillow's getexif reads XMP...
        assert exif_orientation(image) == 1  # ...labelme's _getexif does not.
    doc = labelme_doc([], image_path="x.jpg", size=(12, 20))
    loaded = load_image(parse_annotation(tmp_path / "x.json", json.dumps(doc)))
    assert loaded.size == (12, 20)
    assert loaded.carries_orientation  # so convert must not copy these bytes


def test_image_data_is_not_rotated(tmp_path: Path) -> None:
    data = encode(gradient(20, 12), "JPEG", exif=exif_bytes(6))
    doc = labelme_doc([], image_path="gone.jpg", size=(12, 20), image_data=data)
    loaded = load_image(parse_annotation(tmp_path / "x.json", json.dumps(doc)))
    assert loaded.size == (12, 20)
    assert not loaded.needs_reorient and loaded.carries_orientation


def test_declared_size_checked_in_oriented_frame(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(encode(gradient(20, 12), "JPEG", exif=exif_bytes(6)))
    doc = labelme_doc([], image_path="x.jpg", size=(12, 20))  # the stored frame: wrong
    with pytest.raises(AnnotationError, match=r"imageHeight is 12 but the image .* is 20"):
        load_image(parse_annotation(tmp_path / "x.json", json.dumps(doc)))


def test_pixel_limit_is_scoped_not_global(tmp_path: Path) -> None:
    saved = PIL.Image.MAX_IMAGE_PIXELS
    (tmp_path / "x.png").write_bytes(encode(gradient(20, 12), "PNG"))
    doc = labelme_doc([], image_path="x.png", size=(12, 20))
    annotation = parse_annotation(tmp_path / "x.json", json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"240 pixels, over the limit of 239"):
        load_image(annotation, max_pixels=239)
    assert load_image(annotation, max_pixels=240).size == (12, 20)
    assert saved == PIL.Image.MAX_IMAGE_PIXELS  # importing segkit leaves Pillow's guard alone


def test_check_extent_clips_near_and_rejects_absurd() -> None:
    near = parse_annotation(
        Path("x.json"), json.dumps(doc_with(shape("a", "circle", [[4, 4], [900, 4]])))
    )
    check_extent(near.shapes, (8, 8))  # partly outside: clipped later, not an error
    far = parse_annotation(
        Path("x.json"), json.dumps(doc_with(GOOD_SHAPE, shape("a", "circle", [[4, 4], [1e6, 4]])))
    )
    with pytest.raises(AnnotationError, match=r"shapes\[1\] \(circle 'a'\): points\[1\]"):
        check_extent(far.shapes, (8, 8), where="x.json: ")


def test_write_json_helper_round_trip(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a" / "x.json", doc_with(GOOD_SHAPE))
    assert read_annotation(path).shapes[0].label == "cat"


# --- against the labelme app itself (skipped unless labelme and PyQt5 are installed) ----

_XMP_6 = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>6</tiff:Orientation></x:xmpmeta>'


def _app_cases() -> dict[str, tuple[bytes, str, bool]]:
    """name → (encoded image, suffix, embedded as imageData)."""
    stored = gradient(20, 12)
    deep = PIL.Image.fromarray((np.arange(240).reshape(12, 20) * 250).astype(np.uint16))
    cases = {
        f"jpeg_exif{o}": (encode(stored, "JPEG", exif=exif_bytes(o), quality=95), ".jpg", False)
        for o in range(1, 9)
    }
    cases |= {
        "png_exif6": (encode(stored, "PNG", exif=exif_bytes(6)), ".png", False),
        "webp_exif7": (encode(stored, "WEBP", exif=exif_bytes(7), lossless=True), ".webp", False),
        "jpeg_xmp6": (encode(stored, "JPEG", xmp=_XMP_6, quality=95), ".jpg", False),
        "tiff_rgb6": (encode(stored, "TIFF", tiffinfo={0x0112: 6}), ".tif", False),
        "tiff_16bit6": (encode(deep, "TIFF", tiffinfo={0x0112: 6}), ".tif", False),
        "embedded_jpeg6": (encode(stored, "JPEG", exif=exif_bytes(6), quality=95), ".jpg", True),
        "embedded_png6": (encode(stored, "PNG", exif=exif_bytes(6)), ".png", True),
        "embedded_tiff6": (encode(stored, "TIFF", tiffinfo={0x0112: 6}), ".tif", True),
    }
    return cases


@pytest.mark.parametrize("case", list(_app_cases()))
def test_frame_matches_what_the_labelme_app_shows(tmp_path: Path, case: str) -> None:
    label_file = pytest.importorskip("labelme._label_file")
    qt_gui = pytest.importorskip("PyQt5.QtGui")
    data, suffix, embedded = _app_cases()[case]
    (tmp_path / f"x{suffix}").write_bytes(data)
    doc = labelme_doc([], image_path=f"x{suffix}", size=None, image_data=data if embedded else None)
    json_path = write_json(tmp_path / "x.json", doc)
    # What labelme's app does in loadFile: read the label file, hand its bytes to Qt.
    shown = qt_gui.QImage.fromData(label_file.read_label_file(str(json_path)).image_data)
    assert not shown.isNull()
    loaded = load_image(parse_annotation(json_path, json_path.read_bytes()))
    assert loaded.size == (shown.height(), shown.width())
    if loaded.image.mode == "RGB":
        rgb = shown.convertToFormat(qt_gui.QImage.Format_RGB888)
        pixels = np.frombuffer(rgb.constBits().asstring(rgb.sizeInBytes()), dtype=np.uint8)
        pixels = pixels.reshape(rgb.height(), rgb.bytesPerLine())[:, : 3 * rgb.width()]
        ours = np.asarray(loaded.image).reshape(rgb.height(), -1).astype(int)
        assert np.abs(pixels.astype(int) - ours).mean() < 3  # labelme re-encodes at q95


@given(
    st.lists(
        st.lists(st.tuples(st.floats(-7000, 7000), st.floats(-7000, 7000)), min_size=1, max_size=5),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=200, deadline=None)
def test_check_extent_rejects_exactly_the_far_points(shapes_points: list) -> None:
    shapes = [Shape("a", "polygon", tuple(points)) for points in shapes_points]
    height, width, margin = 100, 300, 3000  # margin = max(10 × 300, 1024)
    far = [
        (i, n)
        for i, points in enumerate(shapes_points)
        for n, (x, y) in enumerate(points)
        if not (-margin <= x <= width + margin and -margin <= y <= height + margin)
    ]
    if not far:
        check_extent(shapes, (height, width))
        return
    index, number = far[0]
    with pytest.raises(AnnotationError, match=rf"shapes\[{index}\] .*points\[{number}\]"):
        check_extent(shapes, (height, width))
