"""Perceptual difference hashes, to find near-duplicate images cheaply.

A hash alone is not enough: the dHash of a low-texture image (a few small cells on a
dark, flat background) is nearly all equal bits, so unrelated images of that kind lie
within a few bits of each other. Each hash therefore carries a small grayscale
thumbnail (:class:`ImageHash`), and :func:`near_duplicate_groups` joins two images only
if their hashes are close *and* their thumbnails correlate almost perfectly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
from numpy.typing import NDArray

from segkit._pillow import pixel_limit_lifted
from segkit.defaults import DEFAULT_MAX_DISTANCE as DEFAULT_MAX_DISTANCE
from segkit.defaults import HASH_BITS as HASH_BITS

#: Side of the square grayscale thumbnail that confirms a hash match.
THUMBNAIL_SIDE = 16
#: Pearson correlation of two thumbnails (so brightness and contrast do not count) at
#: or above which they show the same picture. Measured on synthetic sets: re-encoded
#: (JPEG 60–95), resized, brightened, contrast- or gamma-changed copies ≥ 0.975 (mostly
#: > 0.99); different images within 4 bits (blobs on a dark background, large
#: overlapping blobs, smooth photos) ≤ 0.92 with rare exceptions (one blob each at the
#: same place, or a shading shared by all images). tests/test_imagehash.py checks both.
DEFAULT_MIN_CORRELATION = 0.95
#: Thumbnail standard deviation (gray levels) below which an image counts as flat:
#: its hash and thumbnail carry no picture, so it is no one's near-duplicate
#: (byte-identical copies are still found by content hash).
FLAT_STD = 0.01
#: A picture with structure spread over at least this many thumbnail cells (variance
#: participation ratio) is *dense*: a smooth photo, not a few blobs on a background.
DENSE_CELLS = 32.0
#: Dense pictures also match when only a local edit (a patch, a stamp) sets them
#: apart: without their EDIT_CELLS (5 %) most different cells they must correlate at
#: EDIT_MIN_CORRELATION, and those cells must keep EDIT_MIN_KEPT of each one's variance.
EDIT_CELLS = 13
EDIT_MIN_CORRELATION = 0.98
EDIT_MIN_KEPT = 0.7
#: ... and must correlate at this much even with the edit (a 3×3 white patch on a
#: 24×16 photo: 0.85).
EDIT_MIN_PLAIN_CORRELATION = 0.6

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


class ImageHash(int):
    """A 64-bit dHash that also carries the image's grayscale thumbnail.

    It *is* the hash (an ``int``: compares, hashes, prints and serialises as one), so
    code that only knows hashes keeps working; :func:`near_duplicate_groups` uses the
    thumbnail (``THUMBNAIL_SIDE``² float32 gray levels, row-major) to confirm matches.
    """

    thumbnail: NDArray[np.float32] | None

    def __new__(cls, value: int, thumbnail: NDArray[np.float32] | None = None) -> ImageHash:
        self = super().__new__(cls, value)
        self.thumbnail = thumbnail
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses process pools (parallel_map) with its thumbnail.
        return (ImageHash, (int(self), self.thumbnail))


def _thumbnail(gray: PIL.Image.Image) -> NDArray[np.float32]:
    """Area-averaged ``THUMBNAIL_SIDE``² thumbnail in float, so faint detail survives."""
    if gray.width * gray.height > 256 * 256:
        # Bounded memory for huge images; each thumbnail cell still averages ≥ 256 values.
        gray = gray.resize((256, 256), PIL.Image.Resampling.BOX)
    side = THUMBNAIL_SIDE
    small = gray.convert("F").resize((side, side), PIL.Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32).ravel()


def difference_hash(image: PIL.Image.Image) -> ImageHash:
    """64-bit dHash: sign of horizontal gradients on a 9×8 grayscale thumbnail.

    Returned as an :class:`ImageHash` that also holds a 16×16 thumbnail of the image.
    """
    gray = to_gray8(image)
    small = gray.resize((9, 8), PIL.Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    return ImageHash(int("".join("1" if bit else "0" for bit in bits), 2), _thumbnail(gray))


def hash_image_file(path: Path) -> ImageHash:
    """dHash (with thumbnail) of an image file, decoded at reduced size where the format
    allows (JPEG draft).

    Any size is read: the file is already in the dataset. Raises what Pillow raises on
    a corrupt file (``segkit._pillow.DECODE_ERRORS``).
    """
    with pixel_limit_lifted(), PIL.Image.open(path) as image:
        image.draft("L", (64, 64))
        oriented = PIL.ImageOps.exif_transpose(image)
        return difference_hash(oriented)


def hamming_distance(a: int, b: int) -> int:
    """Number of differing bits."""
    return (int(a) ^ int(b)).bit_count()


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy ≥ 2 has a native kernel, ~10× faster than unpacking)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return np.unpackbits(words.view(np.uint8), axis=-1).reshape(*words.shape, 64).sum(-1)


def _normalised_thumbnails(
    hashes: list[int],
) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Zero-mean unit-length thumbnails (rows); which images have one, are flat, dense."""
    side2 = THUMBNAIL_SIDE * THUMBNAIL_SIDE
    rows = np.zeros((len(hashes), side2), dtype=np.float32)
    known = np.zeros(len(hashes), dtype=bool)
    for index, value in enumerate(hashes):
        thumbnail = getattr(value, "thumbnail", None)
        if thumbnail is not None and np.size(thumbnail) == side2:
            rows[index] = np.asarray(thumbnail, dtype=np.float32).ravel()
            known[index] = True
    rows -= rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    flat = known & (norms < FLAT_STD * np.sqrt(side2))
    scale = np.where(known & ~flat, 1.0 / np.maximum(norms, 1e-12), 0.0)
    rows *= scale.astype(np.float32)[:, None]
    # Participation ratio of the variance: how many cells carry the picture.
    energy = rows.astype(np.float64) ** 2
    spread = 1.0 / np.maximum((energy**2).sum(axis=1), 1e-300)
    dense = known & ~flat & (spread >= DENSE_CELLS)
    return rows, known, flat, dense


def near_duplicate_groups(
    hashes: Mapping[str, int],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
) -> list[list[str]]:
    """Groups (size ≥ 2, sorted) of ids linked by near-duplicate pairs.

    A pair is linked when the hashes are within ``max_distance`` bits and, if both are
    :class:`ImageHash` with thumbnails, the thumbnails show the same picture
    (correlation ≥ ``min_correlation``, or for dense pictures equal but for a local
    edit, :func:`_only_locally_edited`, checked against an image's
    ``EDIT_CANDIDATES_PER_IMAGE`` best-correlated candidates); flat images link to
    nothing. Plain ``int`` hashes are linked on distance alone, as before thumbnails
    existed. Groups are the connected
    components: for a split, a chain of genuine copies (a~b, b~c) must stay together,
    and confirming every link keeps unrelated images from chaining. Work is done with
    numpy in blocks: 10,000 images take well under a second, and about 2 s (300 MB)
    when every pair is a candidate (all hashes alike, smooth alike pictures).
    """
    ids = sorted(hashes)
    count = len(ids)
    if count < 2:
        return []
    listed = [hashes[i] for i in ids]
    values = np.array([int(h) for h in listed], dtype=np.uint64)
    unit, known, flat, dense = _normalised_thumbnails(listed)

    # The representative (lowest index) of each image's group so far.
    label = np.arange(count)
    plain = ~known
    block = 1024
    for start in range(0, count, block):
        stop = min(start + block, count)
        # Upper triangle only: columns from ``start`` on, keeping col > row.
        candidate = np.triu(
            _popcount(values[start:stop, None] ^ values[None, start:]) <= max_distance, k=1
        )
        row_at = np.flatnonzero(candidate.any(axis=1))
        if row_at.size == 0:
            continue
        col_at = np.flatnonzero(candidate.any(axis=0))
        candidate = candidate[np.ix_(row_at, col_at)]
        row_at += start
        col_at += start
        # One matrix product for all candidate pairs: with low-texture images nearly
        # every pair is a candidate, and pair-by-pair work would be quadratic in Python.
        correlation = unit[row_at] @ unit[col_at].T
        usable = ~flat[row_at, None] & ~flat[None, col_at]
        linked = candidate & (
            plain[row_at, None]  # plain int hashes: distance alone, as before thumbnails
            | plain[None, col_at]
            | (usable & (correlation >= min_correlation))
        )
        pair_rows, pair_cols = np.nonzero(linked)
        label = _merged(label, row_at[pair_rows], col_at[pair_cols])
        edited = (
            candidate
            & ~linked
            & dense[row_at, None]
            & dense[None, col_at]
            & (correlation >= EDIT_MIN_PLAIN_CORRELATION)
        )
        pair_rows, pair_cols = _best_per_row(edited, correlation, EDIT_CANDIDATES_PER_IMAGE)
        label = _link_local_edits(label, unit, row_at[pair_rows], col_at[pair_cols])
    groups: dict[int, list[str]] = {}
    for index, sample_id in enumerate(ids):
        groups.setdefault(int(label[index]), []).append(sample_id)
    return sorted(group for group in groups.values() if len(group) > 1)


#: Pairs checked for a local edit at a time (bounds memory: two thumbnails a pair).
_EDIT_CHUNK = 16384
#: An image is checked for a local edit against at most this many candidates, the
#: best-correlated: a locally edited copy is among them, and smooth, alike images
#: (every pair a candidate) no longer cost a check per pair.
EDIT_CANDIDATES_PER_IMAGE = 8


def _best_per_row(
    mask: NDArray[np.bool_], score: NDArray[np.float32], limit: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices of up to ``limit`` highest-scoring ``True`` cells in each row of ``mask``."""
    if not mask.any():
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    limit = min(limit, mask.shape[1])
    scores = np.where(mask, score, -np.inf)
    best = np.argpartition(scores, -limit, axis=1)[:, -limit:]
    rows = np.repeat(np.arange(mask.shape[0]), limit)
    cols = best.ravel()
    chosen = mask[rows, cols]
    return rows[chosen], cols[chosen]


def _merged(label: NDArray[np.intp], rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray:
    """Group labels (lowest member of each group) after also linking ``rows[i]``–``cols[i]``."""
    if rows.size == 0:
        return label
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = label.size
    everyone = np.arange(count)
    # Linking each image to its representative keeps the groups found so far.
    graph = coo_matrix(
        (
            np.ones(rows.size + count, dtype=np.int8),
            (np.concatenate([rows, everyone]), np.concatenate([cols, label])),
        ),
        shape=(count, count),
    )
    _, component = connected_components(graph, directed=False)
    lowest = np.full(component.max() + 1, count)
    np.minimum.at(lowest, component, everyone)
    return lowest[component]


def _link_local_edits(
    label: NDArray[np.intp], unit: NDArray[np.float32], rows: NDArray, cols: NDArray
) -> NDArray:
    """Link the pairs that differ only by a local edit, in chunks; pairs already in one
    group are not checked (smooth, alike images make nearly every pair a candidate)."""
    for part in range(0, rows.size, _EDIT_CHUNK):
        first, second = rows[part : part + _EDIT_CHUNK], cols[part : part + _EDIT_CHUNK]
        apart = label[first] != label[second]
        first, second = first[apart], second[apart]
        if first.size:
            same = _only_locally_edited(unit[first], unit[second])
            label = _merged(label, first[same], second[same])
    return label


def _only_locally_edited(
    first: NDArray[np.float32], second: NDArray[np.float32]
) -> NDArray[np.bool_]:
    """Whether each pair of unit thumbnails (rows) differs only by a local edit.

    Without their ``EDIT_CELLS`` most different cells they must correlate at
    ``EDIT_MIN_CORRELATION`` and keep ``EDIT_MIN_KEPT`` of each one's variance. Only
    for dense pictures: dropping the cells where two sparse ones (a few blobs on a flat
    background) differ leaves just the background, which always agrees.
    """
    same = np.zeros(len(first), dtype=bool)
    for part in range(0, len(first), 16384):
        a, b = first[part : part + 16384], second[part : part + 16384]
        difference = np.abs(a - b)
        cut = np.partition(difference, -EDIT_CELLS, axis=1)[:, -EDIT_CELLS, None]
        keep = difference < cut
        kept = np.maximum(keep.sum(axis=1, keepdims=True), 1)
        a = np.where(keep, a - (a * keep).sum(axis=1, keepdims=True) / kept, 0.0)
        b = np.where(keep, b - (b * keep).sum(axis=1, keepdims=True) / kept, 0.0)
        energy_a, energy_b = (a * a).sum(axis=1), (b * b).sum(axis=1)
        trimmed = (a * b).sum(axis=1) / np.sqrt(np.maximum(energy_a * energy_b, 1e-30))
        same[part : part + 16384] = (
            (trimmed >= EDIT_MIN_CORRELATION)
            & (energy_a >= EDIT_MIN_KEPT)
            & (energy_b >= EDIT_MIN_KEPT)
        )
    return same
