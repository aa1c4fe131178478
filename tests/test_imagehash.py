"""Perceptual hashes: wide (16-bit, 32-bit, float) images and images over Pillow's pixel limit."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageEnhance
import pytest

from segkit.imagehash import (
    ImageHash,
    difference_hash,
    hamming_distance,
    hash_image_file,
    near_duplicate_groups,
    to_gray8,
)


def microscopy(seed: int, shape: tuple[int, int] = (32, 40)) -> np.ndarray:
    """A smooth 16-bit image whose values all lie far above 255, as microscopy images do."""
    rng = np.random.default_rng(seed)
    small = PIL.Image.fromarray(rng.random((4, 5)).astype(np.float32))
    smooth = np.asarray(small.resize(shape[::-1], PIL.Image.Resampling.BILINEAR))
    return (1000 + smooth * 50000).astype(np.uint16)


def test_sixteen_bit_images_hash_apart() -> None:
    first, second = (PIL.Image.fromarray(microscopy(seed)) for seed in (1, 2))
    assert first.mode == "I;16"
    # convert("L") clipped every pixel to 255, so every such image hashed to 0.
    assert difference_hash(first) != 0
    assert hamming_distance(difference_hash(first), difference_hash(second)) > 10


@pytest.mark.parametrize("mode", ["I", "F"])
def test_thirty_two_bit_and_float_images_hash_like_their_sixteen_bit_source(mode: str) -> None:
    image = PIL.Image.fromarray(microscopy(3))
    assert difference_hash(image.convert(mode)) == difference_hash(image)


def test_stretch_ignores_nan_and_infinity() -> None:
    values = microscopy(4).astype(np.float32)
    reference = difference_hash(PIL.Image.fromarray(values))
    values[0, 0], values[5, 7], values[9, 2] = np.nan, np.inf, -np.inf
    gray = np.asarray(to_gray8(PIL.Image.fromarray(values)))
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    assert hamming_distance(difference_hash(PIL.Image.fromarray(values)), reference) <= 2
    flat = PIL.Image.fromarray(np.full((4, 4), np.nan, dtype=np.float32))
    assert np.asarray(to_gray8(flat)).tolist() == [[0] * 4] * 4


def test_eight_bit_images_hash_as_before() -> None:
    rng = np.random.default_rng(5)
    image = PIL.Image.fromarray(rng.integers(0, 256, (16, 18), dtype=np.uint8))
    small = np.asarray(image.resize((9, 8), PIL.Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    assert difference_hash(image) == int("".join("1" if b else "0" for b in bits), 2)


def test_hash_file_over_the_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    PIL.Image.fromarray(microscopy(6)).save(path)
    expected = hash_image_file(path)
    # 32×40 is over twice the limit: Pillow would raise DecompressionBombError.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    assert hash_image_file(path) == expected
    assert PIL.Image.MAX_IMAGE_PIXELS == 100  # the limit is lifted only while reading


def cells(rng: np.random.Generator, size: int = 256) -> PIL.Image.Image:
    """Microscopy-like: three small bright blobs on a dark, flat background."""
    image = PIL.Image.new("L", (size, size), 10)
    draw = PIL.ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.integers(20, size - 20, 2)
        r = int(rng.integers(4, 8))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=200)
    return image


def reopened(image: PIL.Image.Image, fmt: str = "PNG", **save: object) -> PIL.Image.Image:
    """``image`` written and read back as ``hash_image_file`` reads it (JPEG draft)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    buffer.seek(0)
    opened = PIL.Image.open(buffer)
    opened.draft("L", (64, 64))
    opened.load()
    return opened


def test_distinct_low_texture_images_form_no_group() -> None:
    # 300 such images used to chain into a group of 72 (1000 into one of 666): their
    # dHashes are nearly all zero bits, so unrelated images lie within 4 bits.
    rng = np.random.default_rng(0)
    hashes = {f"m{i:03d}": difference_hash(reopened(cells(rng))) for i in range(240)}
    values = np.array([int(h) for h in hashes.values()], dtype=np.uint64)
    close = np.bitwise_count(values[:, None] ^ values[None, :]) <= 4
    assert (close.sum() - len(values)) // 2 > 50  # the hashes alone would link them
    assert near_duplicate_groups(hashes) == []


def test_copies_of_a_low_texture_image_are_grouped_with_it() -> None:
    rng = np.random.default_rng(1)
    original = cells(rng)
    rgb = original.convert("RGB")
    copies = {
        "jpeg": reopened(rgb, "JPEG", quality=70),
        "brighter_jpeg": reopened(PIL.ImageEnhance.Brightness(rgb).enhance(1.3), "JPEG"),
        "contrast": reopened(PIL.ImageEnhance.Contrast(original).enhance(0.7)),
        "half": reopened(original.resize((128, 128), PIL.Image.Resampling.LANCZOS)),
        "plus30": reopened(PIL.Image.eval(original, lambda v: min(255, v + 30))),
    }
    hashes = {name: difference_hash(image) for name, image in copies.items()}
    hashes["original"] = difference_hash(reopened(original))
    others = {f"other{i}": difference_hash(reopened(cells(rng))) for i in range(40)}
    assert near_duplicate_groups({**hashes, **others}) == [sorted(hashes)]


def test_copies_of_a_photo_are_grouped_and_different_photos_not() -> None:
    def photo(seed: int) -> PIL.Image.Image:
        rng = np.random.default_rng(seed)
        small = PIL.Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8))
        return small.resize((160, 120), PIL.Image.Resampling.BICUBIC)

    original = photo(0)
    hashes = {
        "original": difference_hash(reopened(original, "JPEG", quality=95)),
        "jpeg60": difference_hash(reopened(original, "JPEG", quality=60)),
        "small": difference_hash(reopened(original.resize((80, 60)))),
        "darker": difference_hash(reopened(PIL.ImageEnhance.Brightness(original).enhance(0.8))),
    }
    others = {f"other{i}": difference_hash(reopened(photo(i))) for i in range(1, 60)}
    assert near_duplicate_groups({**hashes, **others}) == [sorted(hashes)]


def test_flat_images_are_nobodys_near_duplicate() -> None:
    # A flat picture hashes to 0 and its thumbnail has no structure to compare.
    black, grey = (difference_hash(PIL.Image.new("L", (32, 32), v)) for v in (0, 90))
    assert int(black) == int(grey) == 0
    assert near_duplicate_groups({"black": black, "grey": grey}) == []


def test_plain_integer_hashes_group_by_distance_alone() -> None:
    # Without thumbnails there is nothing to confirm with: the old rule, chains included.
    hashes = {"a": 0b1111, "b": 0b0111, "c": 0b0011, "d": 0b0001}
    assert near_duplicate_groups(hashes, 1) == [["a", "b", "c", "d"]]
    assert near_duplicate_groups(hashes, 0) == []


def test_image_hash_is_the_int_and_keeps_its_thumbnail_through_pickle() -> None:
    value = difference_hash(PIL.Image.fromarray(microscopy(7)))
    assert isinstance(value, ImageHash) and value.thumbnail is not None
    copy = pickle.loads(pickle.dumps(value))
    assert copy == value and int(copy) == int(value) and hash(copy) == hash(int(value))
    assert np.array_equal(copy.thumbnail, value.thumbnail)


def test_local_edit_checks_are_bounded_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Smooth, alike pictures make every pair a local-edit candidate; the check must not
    run once per pair (that took minutes and 10 GB for 10,000 images)."""
    import segkit.imagehash as module

    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 200, 16), (16, 1))
    hashes = {}
    for index in range(400):
        bumps = np.kron(rng.normal(0, 1, (4, 4)), np.ones((4, 4)))
        thumbnail = (ramp + 30 * bumps).astype(np.float32).ravel()
        hashes[f"s{index:03d}"] = module.ImageHash((1 << 64) - 1, thumbnail)
    checked = []
    real = module._only_locally_edited

    def counting(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        checked.append(len(first))
        return real(first, second)

    monkeypatch.setattr(module, "_only_locally_edited", counting)
    module.near_duplicate_groups(hashes)
    assert 0 < sum(checked) <= len(hashes) * module.EDIT_CANDIDATES_PER_IMAGE


def test_best_per_row_picks_the_top_scoring_allowed_cells() -> None:
    from segkit.imagehash import _best_per_row

    mask = np.array(
        [[True, True, False, True], [False, False, False, False], [True, False, True, True]]
    )
    score = np.array([[0.1, 0.9, 1.0, 0.5], [1, 1, 1, 1], [0.3, 0.2, 0.8, 0.7]], dtype=np.float32)
    rows, cols = _best_per_row(mask, score, 2)
    pairs = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 3), (2, 2), (2, 3)]
