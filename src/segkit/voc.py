"""The Pascal-VOC dataset folder: layout, colour map and palette PNG masks."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
from numpy.typing import NDArray

from segkit._io import atomic_write_bytes
from segkit.errors import DatasetError

IMAGES_DIR = "JPEGImages"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
VIZ_DIR = "SegmentationClassVisualization"
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
#: zlib's run-length strategy: label masks are long runs, so it is both faster and
#: smaller than the default strategy (measured: 2.1 ms vs 4.9 ms for 1024×768).
_Z_RLE = 3


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
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_type=_Z_RLE)
    return buffer.getvalue()


def write_palette_png(path: Path, mask: NDArray[np.integer]) -> None:
    """Write ``mask`` as a VOC palette PNG, atomically."""
    atomic_write_bytes(path, encode_palette_png(mask))


def read_mask(path: Path) -> NDArray[np.uint8] | NDArray[np.uint16]:
    """Read a label mask: palette PNG or 8/16-bit grayscale, returned as stored indices.

    RGB colour masks are rejected with a message that says how to fix them, because
    reading colours as class ids is the classic silent failure.
    """
    try:
        with PIL.Image.open(path) as image:
            mode = image.mode
            if mode in ("P", "L"):
                return np.asarray(image, dtype=np.uint8)
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image)
                if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
                    raise DatasetError(f"{path}: 32-bit mask values outside 0..65535")
                return array.astype(np.uint16)
            if mode in ("RGB", "RGBA"):
                raise DatasetError(
                    f"{path}: mask is an RGB colour image, not class ids; convert it to a "
                    "palette PNG whose indices are class ids (VOC colour map) first"
                )
            raise DatasetError(f"{path}: unsupported mask mode {mode!r}")
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read mask ({error})") from error


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
