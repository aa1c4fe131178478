"""Perceptual hashes: wide (16-bit, 32-bit, float) images and images over Pillow's pixel limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from segkit.imagehash import difference_hash, hamming_distance, hash_image_file, to_gray8


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
