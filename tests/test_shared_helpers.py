"""Helpers every stage shares exist once: message text, Pillow errors and limits, ids."""

from __future__ import annotations

import PIL.Image
import pytest

from segkit import _pillow, labelme, validate, voc, weights
from segkit._text import plural, short_list


def test_short_list_and_plural() -> None:
    assert short_list(["a", "b"]) == "a, b"
    assert short_list([f"s{i}" for i in range(10)], 3) == "s0, s1, s2 (and 7 more)"
    assert short_list(["x: bad", "y: bad"], 1, sep="; ") == "x: bad (and 1 more)"
    assert [plural(n, "stem") for n in (0, 1, 2)] == ["0 stems", "1 stem", "2 stems"]


def test_one_tuple_of_decode_errors_and_one_orientation_tag() -> None:
    assert labelme.DECODE_ERRORS is _pillow.DECODE_ERRORS
    assert validate.DECODE_ERRORS is _pillow.DECODE_ERRORS
    assert PIL.Image.DecompressionBombError in _pillow.DECODE_ERRORS
    assert labelme.EXIF_ORIENTATION_TAG == validate.EXIF_ORIENTATION_TAG == 0x0112


def test_weights_use_the_dataset_ignore_values() -> None:
    assert weights.IGNORE_INDEX is voc.IGNORE_INDEX
    assert weights.IGNORE_INDEX_16 is voc.IGNORE_INDEX_16


def test_pixel_limit_is_restored_after_an_error() -> None:
    before = PIL.Image.MAX_IMAGE_PIXELS
    with pytest.raises(RuntimeError), _pillow.pixel_limit_lifted():
        assert _pillow.memory_pixel_cap() // 2 == PIL.Image.MAX_IMAGE_PIXELS
        raise RuntimeError
    assert before == PIL.Image.MAX_IMAGE_PIXELS
    with pytest.raises(RuntimeError), _pillow.pixel_limit_lifted(within_memory=False):
        assert PIL.Image.MAX_IMAGE_PIXELS is None
        raise RuntimeError
    assert before == PIL.Image.MAX_IMAGE_PIXELS
