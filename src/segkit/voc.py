"""The Pascal-VOC dataset folder: layout, colour map and palette PNG masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import PIL.Image
from numpy.typing import NDArray

from segkit._io import atomic_write_bytes
from segkit._pillow import DECODE_ERRORS, pixel_limit_lifted
from segkit.errors import DatasetError, MaskEncodingError
from segkit.png import png_bytes

IMAGES_DIR = "JPEGImages"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
CLASS_VIZ_DIR = "SegmentationClassVisualization"
SPLITS_DIR = "ImageSets/Segmentation"
WEIGHTS_DIR = "SegmentationWeights"
MANIFEST_NAME = "segkit.json"
LABELS_NAME = "labels.txt"
CLASS_NAMES_NAME = "class_names.txt"

BACKGROUND_LABEL = "_background_"
IGNORE_LABEL = "__ignore__"
IGNORE_INDEX = 255
#: Ignore value in 16-bit instance masks (written when an image has > 254 instances).
IGNORE_INDEX_16 = 65535
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def voc_colormap(n: int = 256) -> NDArray[np.uint8]:
    """The standard Pascal-VOC colour map (as labelme and imgviz write it), shape (n, 3).

    >>> voc_colormap(3).tolist()
    [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    >>> voc_colormap()[255].tolist()
    [224, 224, 192]
    """
    ids = np.arange(n, dtype=np.int64)
    cmap = np.zeros((n, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return cmap.astype(np.uint8)


_PALETTE_BYTES = voc_colormap().tobytes()


def encode_palette_png(mask: NDArray[np.integer]) -> bytes:
    """Encode a (H, W) mask with values 0..255 as a VOC palette PNG."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError("palette PNG masks hold values 0..255 only")
        mask = mask.astype(np.uint8)
    height, width = mask.shape
    image = PIL.Image.frombytes("L", (width, height), np.ascontiguousarray(mask).tobytes())
    return mask_png_bytes(with_voc_palette(image))


def encode_uint16_png(mask: NDArray[np.integer]) -> bytes:
    """Encode a (H, W) mask with values 0..65535 as a 16-bit grayscale PNG."""
    return mask_png_bytes(PIL.Image.fromarray(mask.astype(np.uint16)))


def with_voc_palette(image: PIL.Image.Image) -> PIL.Image.Image:
    """Turn an 8-bit "L" image of ids into a "P" image with the VOC colour map, in place."""
    image.putpalette(_PALETTE_BYTES)  # "L" becomes "P"; the stored indices are kept
    return image


def mask_png_bytes(image: PIL.Image.Image) -> bytes:
    """PNG bytes of a mask image ("P" palette or 16-bit), compressed for label runs."""
    return png_bytes(image)


def write_palette_png(path: Path, mask: NDArray[np.integer]) -> None:
    """Write ``mask`` as a VOC palette PNG, atomically."""
    atomic_write_bytes(path, encode_palette_png(mask))


#: Pillow modes of 8-bit masks (palette, grayscale): class masks and most instance masks.
MASK_MODES_8BIT = ("P", "L")
#: Pillow modes of 16-bit grayscale PNGs ("I" where Pillow widens them): instance masks only.
MASK_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: What each kind of mask must be (docs/formats.md), for error messages.
_MASK_RULES = {
    "class": "class masks must be a palette (P) or 8-bit grayscale (L) PNG holding class ids "
    "0..254 and 255 for ignore (16-bit grayscale is only for instance masks)",
    "instance": "instance masks must be a palette (P) or 8-bit grayscale (L) PNG "
    "(255 = ignore), or 16-bit grayscale (65535 = ignore)",
}
MaskKind = Literal["class", "instance"]


def mask_ids(
    array: NDArray[Any], mode: str, kind: MaskKind = "class"
) -> NDArray[np.uint8] | NDArray[np.uint16]:
    """The ids a decoded mask holds, given ``np.asarray(image)`` and ``image.mode``.

    Class masks are 8-bit (palette or L) and come back as uint8. Instance masks may
    also be 16-bit grayscale (written when an image has more than 254 instances) and
    then come back as uint16. Anything else raises ``MaskEncodingError`` saying what
    the mask must be; RGB colour masks get their own message, because reading colours
    as ids is the classic silent failure.

    >>> mask_ids(np.zeros((2, 2), np.uint16), "I;16", "instance").dtype
    dtype('uint16')
    >>> mask_ids(np.zeros((2, 2), np.uint16), "I;16", "class")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    segkit.errors.MaskEncodingError: class mask has mode 'I;16'; class masks must be ...
    """
    if mode in MASK_MODES_8BIT:
        return np.asarray(array, dtype=np.uint8)
    if mode in ("RGB", "RGBA"):
        raise MaskEncodingError(
            f"{kind} mask is an RGB colour image, not ids; convert it to a palette PNG "
            "whose indices are class ids (VOC colour map) first"
        )
    if kind == "instance" and mode in MASK_MODES_16BIT:
        if array.size and (array.min() < 0 or array.max() > IGNORE_INDEX_16):
            raise MaskEncodingError(
                f"instance mask has 32-bit values outside 0..{IGNORE_INDEX_16}; {_MASK_RULES[kind]}"
            )
        return array.astype(np.uint16)
    raise MaskEncodingError(f"{kind} mask has mode {mode!r}; {_MASK_RULES[kind]}")


def read_mask(path: Path, kind: MaskKind = "class") -> NDArray[np.uint8] | NDArray[np.uint16]:
    """Read a class mask (uint8) or an instance mask (uint8 or uint16) as stored ids.

    Any size is read (the file is already in the dataset). Raises ``DatasetError``
    naming the file when it cannot be decoded or is not a valid ``kind`` mask (see
    ``mask_ids``).
    """
    try:
        with pixel_limit_lifted(), PIL.Image.open(path) as image:
            return mask_ids(np.asarray(image), image.mode, kind)
    except MaskEncodingError as error:
        raise MaskEncodingError(f"{path}: {error}") from None
    except DECODE_ERRORS as error:
        raise DatasetError(f"{path}: cannot read mask ({error})") from error


def read_class_mask(path: Path) -> NDArray[np.uint8]:
    """Read a class mask: palette or 8-bit grayscale PNG, as uint8 class ids."""
    return read_mask(path, "class")  # type: ignore[return-value]


def read_image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image or mask file from its header, whatever its size."""
    try:
        with pixel_limit_lifted(), PIL.Image.open(path) as image:
            return image.height, image.width
    except DECODE_ERRORS as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error


def read_text(path: Path, what: str) -> str:
    """A text file of the dataset (labels, split list), as UTF-8.

    A byte-order mark, which Windows editors put at the start, is dropped, so it never
    becomes part of the first label or stem. Raises ``DatasetError`` naming the file.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path}: {what} is not UTF-8 text (byte {error.start}: {error.reason}); "
            "save it as UTF-8"
        ) from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read {what} ({error.strerror or error})") from None


def read_labels(path: Path) -> LabelSet:
    """Parse a ``labels.txt`` or ``class_names.txt`` file (see ``parse_labels``)."""
    return parse_labels(read_text(path, "label list"), str(path))


def read_split_file(path: Path) -> list[str]:
    """The stems listed in a VOC split file (one per line; blank lines skipped)."""
    lines = read_text(path, "split file").splitlines()
    return [line.strip() for line in lines if line.strip()]


@dataclass(frozen=True)
class LabelSet:
    """Class names in id order (``names[0]`` is background); ``__ignore__`` is always 255."""

    names: tuple[str, ...]

    def to_ids(self) -> dict[str, int]:
        """Map each label to its mask value (``__ignore__`` to 255)."""
        ids = {name: index for index, name in enumerate(self.names)}
        ids[IGNORE_LABEL] = IGNORE_INDEX
        return ids

    def labels_txt(self) -> str:
        """labelme's labels.txt text: ``__ignore__``, ``_background_``, then classes."""
        return "\n".join([IGNORE_LABEL, *self.names]) + "\n"

    def class_names_txt(self) -> str:
        """class_names.txt as labelme's labelme2voc writes it (id order, no ignore)."""
        return "\n".join(self.names) + "\n"


def parse_labels(text: str, source: str) -> LabelSet:
    """Parse labelme's labels.txt format, or a comma-separated list.

    ``__ignore__`` (optional; 255 is always reserved for it) must come first; ``_background_`` must
    be the first real class (id 0). A list without ``_background_`` gets it prepended.

    >>> parse_labels("__ignore__\\n_background_\\ncat\\ndog\\n", "x").names
    ('_background_', 'cat', 'dog')
    >>> parse_labels("cat,dog", "x").names
    ('_background_', 'cat', 'dog')
    """
    separator = "," if "\n" not in text.strip() and "," in text else "\n"
    entries = [entry.strip() for entry in text.split(separator)]
    entries = [entry for entry in entries if entry]
    if not entries:
        raise DatasetError(f"{source}: no labels found")
    if IGNORE_LABEL in entries[1:]:
        raise DatasetError(f"{source}: {IGNORE_LABEL} must be the first label")
    names = entries[1:] if entries[0] == IGNORE_LABEL else entries
    if BACKGROUND_LABEL in names and names[0] != BACKGROUND_LABEL:
        raise DatasetError(f"{source}: {BACKGROUND_LABEL} must come before every class")
    if not names or names[0] != BACKGROUND_LABEL:
        names = [BACKGROUND_LABEL, *names]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(f"{source}: duplicate labels {duplicates}")
    if len(names) > IGNORE_INDEX:
        raise DatasetError(f"{source}: {len(names)} classes; at most 255 fit a PNG mask")
    return LabelSet(tuple(names))


def find_image(images_dir: Path, stem: str) -> Path | None:
    """The image file for ``stem`` in ``images_dir`` (any supported suffix), if any."""
    for suffix in IMAGE_SUFFIXES:
        candidate = images_dir / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None
