"""Read and check labelme JSON files, and load their image in labelme's display frame."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import PIL.Image
from numpy.typing import NDArray

from segkit._pillow import (
    DECODE_ERRORS,
    EXIF_ORIENTATION_TAG,
    decode_error_text,
    pixel_limit_lifted,
)
from segkit._text import is_unicode, printable
from segkit.defaults import DEFAULT_MAX_PIXELS
from segkit.errors import AnnotationError

#: Number of points each shape type needs: an exact count, or (minimum, None).
POINT_COUNTS: dict[str, int | tuple[int, None]] = {
    "polygon": (3, None),
    "rectangle": 2,
    "circle": 2,
    "line": 2,
    "linestrip": (2, None),
    "point": 1,
    "oriented_rectangle": 4,
    "mask": 2,
}
SHAPE_TYPES = tuple(POINT_COUNTS)
#: Points may lie this many image sizes outside the image; farther ones are corrupt data
#: (Pillow silently overflows on them, and drawing a huge circle takes minutes).
MAX_OUTSIDE_IMAGE_SIZES = 10
MIN_OUTSIDE_MARGIN = 1024
_WHITESPACE = b" \t\r\n\f\v"


@dataclass(frozen=True)
class Shape:
    """One labelme shape, checked: finite points, the right count for its type."""

    label: str
    shape_type: str
    points: tuple[tuple[float, float], ...]
    group_id: int | None = None
    mask: NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class Annotation:
    """A parsed labelme file. ``image_path`` is POSIX-style and relative to the JSON."""

    path: Path
    shapes: tuple[Shape, ...]
    image_path: str | None
    image_data: bytes | None
    image_height: int | None
    image_width: int | None

    def image_file(self) -> Path | None:
        """The image file ``imagePath`` points to, or ``None`` when data is embedded."""
        if self.image_data is not None or not self.image_path:
            return None
        return self.path.parent / self.image_path


def _fail(path: Path, where: str, reason: str) -> AnnotationError:
    return AnnotationError(f"{path}: {where}{reason}")


_NUMBER_TYPES = (int, float)
#: Shortens a point in a message: a 400-digit integer literal must not fill the screen.
_SHORT = reprlib.Repr()
_SHORT.maxlong, _SHORT.maxlist, _SHORT.maxstring = 24, 4, 40
_JPEG_END = b"\xff\xd9"
_LIST_TYPE = frozenset({list})
_PAIR_LENGTH = frozenset({2})
_FLOAT_TYPE = frozenset({float})
_NUMBER_TYPE_SET = frozenset(_NUMBER_TYPES)


def _parse_points(path: Path, where: str, raw: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(path, where, "'points' must be a non-empty list of [x, y]")
    points = _points_at_once(raw)
    if points is not None:
        return points
    return _points_one_by_one(path, where, raw)


def _points_at_once(raw: list) -> tuple[tuple[float, float], ...] | None:
    """The points of a well-formed list, checked whole by C-level builtins; else ``None``.

    Accepts exactly when every point is a list of two numbers (int or float, never
    bool) and every coordinate is finite, which is when ``_points_one_by_one`` accepts;
    anything else (rare) goes to that loop, which names the first bad point.
    """
    try:
        if set(map(type, raw)) != _LIST_TYPE or set(map(len, raw)) != _PAIR_LENGTH:
            return None
        kinds = set(map(type, chain.from_iterable(raw)))
        # A sum is finite only when every term is: inf and nan propagate through it
        # (a finite sum that overflows is merely sent to the loop). A huge int raises.
        if not kinds <= _NUMBER_TYPE_SET or not math.isfinite(sum(chain.from_iterable(raw))):
            return None
        if kinds == _FLOAT_TYPE:  # what labelme writes: no conversion needed
            return tuple(map(tuple, raw))
        return tuple((float(x), float(y)) for x, y in raw)
    except OverflowError:  # an integer too large for a float: the loop reports it
        return None


def _points_one_by_one(path: Path, where: str, raw: list) -> tuple[tuple[float, float], ...]:
    points = []
    isfinite = math.isfinite
    for index, point in enumerate(raw):
        # Exact type checks: JSON numbers are int or float, and bool must not pass.
        if (
            type(point) is not list
            or len(point) != 2
            or type(point[0]) not in _NUMBER_TYPES
            or type(point[1]) not in _NUMBER_TYPES
        ):
            raise _fail(
                path, where, f"points[{index}] must be [x, y] numbers, got {_SHORT.repr(point)}"
            )
        try:
            x, y = float(point[0]), float(point[1])
        except OverflowError:  # an integer literal too large for a float
            x = y = math.inf
        if not (isfinite(x) and isfinite(y)):
            raise _fail(path, where, f"points[{index}] is not finite: {_SHORT.repr(point)}")
        points.append((x, y))
    return tuple(points)


def _check_point_count(path: Path, where: str, shape_type: str, count: int) -> None:
    expected = POINT_COUNTS[shape_type]
    if isinstance(expected, int):
        if count != expected:
            raise _fail(path, where, f"{shape_type} needs exactly {expected} points, got {count}")
    elif count < expected[0]:
        raise _fail(path, where, f"{shape_type} needs at least {expected[0]} points, got {count}")


def _b64decode(text: str) -> bytes:
    """Strict base64, except that line breaks and spaces (MIME-style wrapping) are allowed."""
    return base64.b64decode(text.encode("ascii").translate(None, _WHITESPACE), validate=True)


def _decode_mask(path: Path, where: str, raw: Any) -> NDArray[np.bool_]:
    if not isinstance(raw, str):
        raise _fail(path, where, "mask shape needs 'mask': a base64 PNG string")
    try:
        data = _b64decode(raw)
    except (binascii.Error, ValueError) as error:
        raise _fail(path, where, f"'mask' is not valid base64 ({error})") from None
    try:
        # segkit's own size check below names the problem; Pillow's bomb error would not.
        with pixel_limit_lifted(within_memory=False), PIL.Image.open(io.BytesIO(data)) as bitmap:
            if bitmap.width * bitmap.height > DEFAULT_MAX_PIXELS:
                raise _fail(
                    path,
                    where,
                    f"'mask' bitmap is {bitmap.width}×{bitmap.height}, over the limit "
                    f"of {DEFAULT_MAX_PIXELS} pixels",
                )
            array = np.asarray(bitmap)
    except AnnotationError:
        raise
    except DECODE_ERRORS as error:
        raise _fail(
            path, where, f"'mask' is not a valid PNG bitmap ({decode_error_text(error)})"
        ) from None
    if array.ndim != 2:
        raise _fail(path, where, f"'mask' must be a single-channel image, got shape {array.shape}")
    return array.astype(bool)


def _clean_label(label: Any) -> str | AnnotationError:
    """The stripped label, or the reason it is not one (returned, not raised: the scan skips it)."""
    if not isinstance(label, str) or not label.strip():
        return AnnotationError(f"'label' must be a non-empty string, got {label!r}")
    # labels.txt is line-based and stripped (as labelme reads it), so a label must
    # survive that round trip or its id would change between runs.
    label = label.strip()
    if len(label.splitlines()) > 1:
        return AnnotationError(f"'label' {label!r} contains a line break")
    if not is_unicode(label):
        return AnnotationError(
            f"'label' {_escaped(label)} contains an unpaired surrogate (a broken \\u escape), "
            "so it cannot be saved as UTF-8"
        )
    return label


def _escaped(value: object) -> str:
    """``repr(value)`` that can be printed: lone surrogates as ``\\udcxx``."""
    return printable(repr(value))


def scan_labels(path: Path, text: str | bytes) -> list[str]:
    """The valid labels of a labelme file's shapes, checking nothing else (a fast first pass).

    Raises ``AnnotationError`` only when the file is not JSON with a ``shapes`` list;
    every other defect is left to ``parse_annotation``, which reports it in full.
    """
    data = _load_json(path, text)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise _fail(path, "", "not a labelme file (no 'shapes' list)")
    labels = (_clean_label(s.get("label")) for s in data["shapes"] if isinstance(s, dict))
    return [label for label in labels if isinstance(label, str)]


def _load_json(path: Path, text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except UnicodeDecodeError as error:
        raise _fail(path, "", f"not UTF-8 text ({error}); save it as UTF-8") from None
    except (ValueError, RecursionError) as error:
        # ValueError covers JSONDecodeError and over-long integer literals.
        raise _fail(path, "", f"not valid JSON ({error})") from None


def _parse_shape(path: Path, index: int, raw: Any) -> Shape:
    where = f"shapes[{index}]: "
    if not isinstance(raw, dict):
        raise _fail(path, where, "shape must be an object")
    label = _clean_label(raw.get("label"))
    if isinstance(label, AnnotationError):
        raise _fail(path, where, str(label))
    # labelme < 4 wrote no shape_type (and some tools null); those shapes are polygons.
    # Any other non-string, or "", is a defect, not a polygon.
    shape_type = raw.get("shape_type")
    if shape_type is None:
        shape_type = "polygon"
    if not isinstance(shape_type, str):
        raise _fail(path, where, f"'shape_type' must be a string or null, got {shape_type!r}")
    if shape_type not in POINT_COUNTS:
        raise _fail(
            path,
            where,
            f"unknown shape_type {_escaped(shape_type)}; known: {', '.join(SHAPE_TYPES)}",
        )
    where = f"shapes[{index}] ({shape_type} {label!r}): "
    points = _parse_points(path, where, raw.get("points"))
    _check_point_count(path, where, shape_type, len(points))
    group_id = raw.get("group_id")
    if group_id is not None and (not isinstance(group_id, int) or isinstance(group_id, bool)):
        raise _fail(path, where, f"'group_id' must be an integer or null, got {group_id!r}")
    mask = _decode_mask(path, where, raw.get("mask")) if shape_type == "mask" else None
    return Shape(label, shape_type, points, group_id, mask)


def _optional_int(path: Path, data: dict, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    # Some tools write 480.0; labelme compares with ==, so an integral float is fine.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _fail(path, "", f"'{key}' must be a positive integer, got {value!r}")
    return value


def parse_annotation(path: Path, text: str | bytes) -> Annotation:
    """Parse labelme JSON ``text`` read from ``path``; raise ``AnnotationError`` on any defect."""
    data = _load_json(path, text)
    if not isinstance(data, dict):
        raise _fail(path, "", f"not a labelme file (top level is a {type(data).__name__})")
    if not isinstance(data.get("shapes"), list):
        raise _fail(path, "", "not a labelme file (no 'shapes' list)")
    if "imagePath" not in data and "imageData" not in data:
        raise _fail(path, "", "not a labelme file (no 'imagePath' or 'imageData')")
    image_path = data.get("imagePath")
    if image_path is not None and not isinstance(image_path, str):
        raise _fail(path, "", f"'imagePath' must be a string, got {image_path!r}")
    if image_path is not None and not is_unicode(image_path):
        raise _fail(
            path,
            "",
            f"'imagePath' {_escaped(image_path)} contains an unpaired surrogate (a broken "
            "\\u escape, or a file name that is not UTF-8); rename the image to a UTF-8 name",
        )
    image_data = None
    if data.get("imageData") is not None:
        if not isinstance(data["imageData"], str):
            raise _fail(path, "", "'imageData' must be a base64 string")
        try:
            image_data = _b64decode(data["imageData"])
        except (binascii.Error, ValueError) as error:
            raise _fail(path, "", f"'imageData' is not valid base64 ({error})") from None
    if image_data is None and not image_path:
        raise _fail(path, "", "neither 'imageData' nor 'imagePath' names an image")
    shapes = tuple(_parse_shape(path, index, raw) for index, raw in enumerate(data["shapes"]))
    return Annotation(
        path=path,
        shapes=shapes,
        # labelme on Windows writes backslashes; they are separators there.
        image_path=PureWindowsPath(image_path).as_posix() if image_path else None,
        image_data=image_data,
        image_height=_optional_int(path, data, "imageHeight"),
        image_width=_optional_int(path, data, "imageWidth"),
    )


def read_annotation_bytes(path: Path) -> bytes:
    """The bytes of a labelme JSON file; ``AnnotationError`` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise _fail(path, "", f"cannot read ({error.strerror or error})") from None


def read_annotation(path: Path) -> Annotation:
    """Read and check one labelme JSON file."""
    return parse_annotation(Path(path), read_annotation_bytes(path))


@dataclass
class LoadedImage:
    """An annotation's image in labelme's display frame.

    ``source_bytes`` are the encoded bytes as found (file or ``imageData``);
    ``needs_reorient`` is true when the pixels had to be rotated from the stored
    frame. ``carries_orientation`` is true when the bytes hold an orientation tag
    other than 1 (applied or not), so copying them would let EXIF-aware readers
    rotate the copy away from its masks.
    """

    image: PIL.Image.Image
    source_bytes: bytes
    source_format: str
    needs_reorient: bool
    carries_orientation: bool = False
    #: The bytes are a JPEG that can be copied as the output image unchanged.
    copyable_jpeg: bool = False
    #: Set when ``image`` holds only a reduced decode (see ``load_image(need_pixels=False)``).
    display_size: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in the display frame."""
        return self.display_size or (self.image.height, self.image.width)


def exif_orientation(image: PIL.Image.Image) -> int:
    """The EXIF orientation labelme's ``apply_exif_orientation`` honours (JPEG/PNG/WebP).

    TIFF has no ``_getexif``, so this is 1 for TIFF: Pillow itself turns a TIFF by its
    orientation tag (see ``load_image``).
    """
    # labelme reads orientation through Image._getexif, which only some formats define,
    # and which (unlike getexif) ignores an XMP orientation in a file without EXIF.
    getter = getattr(image, "_getexif", None)
    if getter is None:
        return 1
    try:
        exif = getter()
    except DECODE_ERRORS:
        return 1
    value = exif.get(EXIF_ORIENTATION_TAG, 1) if isinstance(exif, dict) else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _any_orientation_tag(image: PIL.Image.Image) -> bool:
    """True when any reader might rotate these bytes (EXIF or XMP orientation ≠ 1)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except DECODE_ERRORS:
        return True  # unreadable metadata: do not copy it along
    return value != 1


#: Image modes labelme 6 reads with Pillow; a TIFF in any other mode (16-bit, float)
#: it reads with tifffile, which ignores the TIFF orientation tag.
LABELME_PILLOW_MODES = frozenset({"1", "L", "P", "RGB", "RGBA", "LA", "PA"})

_ORIENTATION_OPS: dict[int, tuple[PIL.Image.Transpose, ...]] = {
    2: (PIL.Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (PIL.Image.Transpose.ROTATE_180,),
    4: (PIL.Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (PIL.Image.Transpose.TRANSPOSE,),
    6: (PIL.Image.Transpose.ROTATE_270,),
    7: (PIL.Image.Transpose.TRANSVERSE,),
    8: (PIL.Image.Transpose.ROTATE_90,),
}


_INVERSE_OPS: dict[int, tuple[PIL.Image.Transpose, ...]] = {
    **_ORIENTATION_OPS,
    6: (PIL.Image.Transpose.ROTATE_90,),
    8: (PIL.Image.Transpose.ROTATE_270,),
}


def apply_orientation(image: PIL.Image.Image, orientation: int) -> PIL.Image.Image:
    """Rotate/flip ``image`` from its stored frame to the frame EXIF ``orientation`` describes."""
    for op in _ORIENTATION_OPS.get(orientation, ()):
        image = image.transpose(op)
    return image


def _tiff_orientation(image: PIL.Image.Image) -> int:
    """The TIFF orientation tag Pillow applies by itself when it loads a TIFF."""
    tags = getattr(image, "tag_v2", None)
    value = tags.get(EXIF_ORIENTATION_TAG, 1) if tags is not None else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _keeps_tiff_orientation(image: PIL.Image.Image, embedded: bool) -> bool:
    """Whether labelme shows this TIFF turned by its tag, as Pillow loads it.

    Embedded TIFF bytes go straight to Qt, whose TIFF reader turns them; a TIFF file
    is read by Pillow (turned) in 8-bit modes and by tifffile (not turned) otherwise.
    """
    return embedded or image.mode in LABELME_PILLOW_MODES


def load_image(
    annotation: Annotation,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
    need_pixels: bool = True,
    too_large_hint: str = "raise --max-pixels if the image is genuine",
) -> LoadedImage:
    """Load the annotation's image as the labelme app shows it, and check its declared size.

    ``imageData`` is used without EXIF rotation (the app hands it to Qt, which ignores
    EXIF, and the app itself only embeds already-rotated pixels); an ``imagePath``
    image gets its EXIF orientation applied, as the app does when it opens the file.
    A TIFF's own orientation tag is applied when the app shows the TIFF turned: for
    ``imageData`` (Qt turns it) and for 8-bit files (Pillow turns them on load), not
    for 16-bit and float files (labelme reads those with tifffile, which does not).

    ``data`` passes the image file's bytes when the caller already read them. With
    ``need_pixels=False`` a JPEG that can be copied unchanged is not decoded when its
    header parses and it ends in the end-of-image marker (else it is decoded at 1/8
    scale, so a truncated file fails); ``image`` is then not meant for its pixels.
    ``too_large_hint`` ends the message about an image over ``max_pixels``: what the
    caller's user can do about it.
    """
    path = annotation.path
    image_file = annotation.image_file()
    if annotation.image_data is not None:
        data, origin = annotation.image_data, "imageData"
    elif data is not None:
        origin = str(image_file)
    else:
        if image_file is not None and image_file.is_dir():
            raise _fail(path, "", f"imagePath names a folder, not an image: {image_file}")
        if image_file is None or not image_file.is_file():
            raise _fail(path, "", f"image not found: {image_file} (from imagePath)")
        try:
            data = image_file.read_bytes()
        except OSError as error:
            raise _fail(path, "", f"cannot read image {image_file} ({error.strerror})") from None
        origin = str(image_file)
    if not data:
        raise _fail(path, "", f"image {origin} is an empty file (0 bytes)")
    try:
        with pixel_limit_lifted(within_memory=False):
            # Decode from memory, not from the path: Pillow memory-maps raw TIFFs opened
            # by name and then mis-decodes grey/RGBA/16-bit ones with orientation 5-8.
            image = PIL.Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise _fail(
                    path,
                    "",
                    f"image {origin} is {width}×{height} = {width * height} pixels, over the "
                    f"limit of {max_pixels} ({too_large_hint})",
                )
            orientation = exif_orientation(image) if annotation.image_data is None else 1
            tiff_orientation = _tiff_orientation(image)
            carries_orientation = _any_orientation_tag(image)
            copyable = (
                image.format in ("JPEG", "MPO")
                and orientation == 1
                and not carries_orientation
                and image.mode in ("RGB", "L", "CMYK")
            )
            if not (copyable and not need_pixels):
                image.load()
            elif not data.endswith(_JPEG_END):
                # Header parsed but no end marker: decode at 1/8 scale, which reads every
                # entropy-coded block, so a truncated file fails here. A complete file
                # (FFD9 can only be the end marker in the scan data) needs no decode.
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                image.load()
    except AnnotationError:
        raise
    except DECODE_ERRORS as error:
        raise _fail(
            path, "", f"cannot decode image {origin} ({decode_error_text(error)})"
        ) from None
    source_format = image.format or ""
    # Pillow turns a TIFF by its orientation tag as it loads it, and then drops the tag.
    pillow_turned = tiff_orientation != 1 and EXIF_ORIENTATION_TAG not in getattr(
        image, "tag_v2", {}
    )
    if pillow_turned and not _keeps_tiff_orientation(image, annotation.image_data is not None):
        for op in _INVERSE_OPS[tiff_orientation]:
            image = image.transpose(op)
        pillow_turned = False
    oriented = apply_orientation(image, orientation)
    display_size = (height, width) if copyable and not need_pixels else None
    declared = (annotation.image_height, annotation.image_width)
    actual = display_size or (oriented.height, oriented.width)
    for name, want, got in zip(("imageHeight", "imageWidth"), declared, actual, strict=True):
        if want is not None and want != got:
            raise _fail(
                path,
                "",
                f"{name} is {want} but the image {origin} is {got} (height×width "
                f"{actual[0]}×{actual[1]} after EXIF orientation)",
            )
    return LoadedImage(
        oriented,
        data,
        source_format,
        needs_reorient=orientation != 1 or pillow_turned,
        carries_orientation=carries_orientation,
        copyable_jpeg=copyable,
        display_size=display_size,
    )


def check_extent(shapes: Sequence[Shape], size: tuple[int, int], where: str = "") -> None:
    """Reject points absurdly far outside an image of ``size`` (H, W); near ones are clipped."""
    height, width = size
    margin = max(MAX_OUTSIDE_IMAGE_SIZES * max(height, width), MIN_OUTSIDE_MARGIN)
    count = sum(len(shape.points) for shape in shapes)
    # All coordinates at once: x, y alternate in one flat array.
    xy = np.fromiter(
        chain.from_iterable(chain.from_iterable(shape.points for shape in shapes)),
        dtype=np.float64,
        count=2 * count,
    )
    x, y = xy[0::2], xy[1::2]
    if ((x >= -margin) & (x <= width + margin) & (y >= -margin) & (y <= height + margin)).all():
        return
    # Some point is too far: find the first one, point by point, for the message.
    for index, shape in enumerate(shapes):
        for number, (x, y) in enumerate(shape.points):
            if not (-margin <= x <= width + margin and -margin <= y <= height + margin):
                raise AnnotationError(
                    f"{where}shapes[{index}] ({shape.shape_type} {shape.label!r}): "
                    f"points[{number}] ({x:g}, {y:g}) lies more than {margin} pixels outside "
                    f"the {height}×{width} image; fix or delete the shape"
                )


def read_image_header(path: Path) -> tuple[int, int]:
    """(height, width) of an image file in labelme's display frame, without decoding pixels."""
    with pixel_limit_lifted(within_memory=False), PIL.Image.open(path) as image:
        width, height = image.size
        if exif_orientation(image) in (5, 6, 7, 8):
            width, height = height, width
        # Pillow reports a TIFF's size already turned by its tag; labelme's tifffile
        # path (16-bit, float) does not turn it.
        if _tiff_orientation(image) in (5, 6, 7, 8) and not _keeps_tiff_orientation(
            image, embedded=False
        ):
            width, height = height, width
    return height, width


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LABELME_PILLOW_MODES",
    "SHAPE_TYPES",
    "Annotation",
    "LoadedImage",
    "Shape",
    "apply_orientation",
    "check_extent",
    "exif_orientation",
    "load_image",
    "parse_annotation",
    "read_annotation",
    "read_image_header",
]
