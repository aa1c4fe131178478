"""Perceptual difference hashes, to find near-duplicate images cheaply."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps

from segkit._pillow import pixel_limit_lifted

HASH_BITS = 64
#: Hamming distance (of 64 bits) at or below which two images count as near-duplicates.
DEFAULT_MAX_DISTANCE = 4


#: Modes wider than 8 bits per pixel (16-bit and 32-bit integer, float).
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_BLOCK_ROWS = 256


def to_gray8(image: PIL.Image.Image) -> PIL.Image.Image:
    """An 8-bit grayscale ("L") view of ``image`` that keeps its contrast.

    ``convert("L")`` clips 16-bit, 32-bit and float values to 0..255, which turns most
    microscopy images into one flat white; those are stretched linearly from their
    finite minimum to their maximum instead (NaN and ±inf count as the nearest end).
    """
    if image.mode not in _WIDE_MODES:
        return image.convert("L")
    values = np.asarray(image)
    if values.size == 0:
        return PIL.Image.new("L", image.size)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        low = float(np.min(values, where=finite, initial=np.inf))
        high = float(np.max(values, where=finite, initial=-np.inf))
        if low > high:  # nothing finite
            return PIL.Image.new("L", image.size)
    else:
        low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    gray = np.empty(values.shape, dtype=np.uint8)
    # In row blocks, so a huge image needs one byte per pixel on top of its own array.
    for start in range(0, values.shape[0], _BLOCK_ROWS):
        block = values[start : start + _BLOCK_ROWS].astype(np.float64)
        block = np.nan_to_num(block, nan=low, posinf=high, neginf=low)
        gray[start : start + _BLOCK_ROWS] = np.clip(np.rint((block - low) * scale), 0, 255)
    return PIL.Image.fromarray(gray, mode="L")


def difference_hash(image: PIL.Image.Image) -> int:
    """64-bit dHash: sign of horizontal gradients on a 9×8 grayscale thumbnail."""
    small = to_gray8(image).resize((9, 8), PIL.Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hash_image_file(path: Path) -> int:
    """dHash of an image file, decoded at reduced size where the format allows (JPEG draft).

    Any size is read: the file is already in the dataset. Raises what Pillow raises on
    a corrupt file (``segkit._pillow.DECODE_ERRORS``).
    """
    with pixel_limit_lifted(), PIL.Image.open(path) as image:
        image.draft("L", (64, 64))
        oriented = PIL.ImageOps.exif_transpose(image)
        return difference_hash(oriented)


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy ≥ 2 has a native kernel, ~10× faster than unpacking)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return np.unpackbits(words.view(np.uint8), axis=-1).reshape(*words.shape, 64).sum(-1)


def near_duplicate_groups(
    hashes: Mapping[str, int], max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[list[str]]:
    """Groups (size ≥ 2, sorted) of ids whose hashes chain within ``max_distance`` bits.

    Transitive: if a~b and b~c, then a, b, c form one group. Pairwise distances are
    computed with numpy in blocks, so thousands of images take well under a second.
    """
    ids = sorted(hashes)
    if len(ids) < 2:
        return []
    values = np.array([hashes[i] for i in ids], dtype=np.uint64)
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    block = 1024
    for start in range(0, len(ids), block):
        xor = values[start : start + block, None] ^ values[None, :]
        distances = _popcount(xor)
        rows, cols = np.nonzero(distances <= max_distance)
        for row, col in zip(rows + start, cols, strict=True):
            if row < col:
                parent[find(row)] = find(col)
    groups: dict[int, list[str]] = {}
    for index, sample_id in enumerate(ids):
        groups.setdefault(find(index), []).append(sample_id)
    return sorted(group for group in groups.values() if len(group) > 1)
