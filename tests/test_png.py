"""segkit's own PNG writer decodes (with Pillow) to exactly the pixels and palette given."""

from __future__ import annotations

import io
import zlib

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segkit import png
from segkit.png import png_bytes, scanline_canvas
from segkit.voc import voc_colormap, with_voc_palette

SHAPES = st.tuples(st.integers(1, 40), st.integers(1, 40))


def _decode(data: bytes) -> PIL.Image.Image:
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
    return image


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, SHAPES))
def test_palette_png_round_trips_pixels_and_voc_palette(mask: np.ndarray) -> None:
    image = with_voc_palette(PIL.Image.fromarray(mask))
    decoded = _decode(png_bytes(image))
    assert decoded.mode == "P"
    np.testing.assert_array_equal(np.asarray(decoded), mask)
    assert decoded.getpalette() == voc_colormap().ravel().tolist()


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint16, SHAPES))
def test_sixteen_bit_png_round_trips(mask: np.ndarray) -> None:
    decoded = _decode(png_bytes(PIL.Image.fromarray(mask)))
    np.testing.assert_array_equal(np.asarray(decoded).astype(np.uint16), mask)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, SHAPES))
def test_grayscale_png_round_trips(mask: np.ndarray) -> None:
    decoded = _decode(png_bytes(PIL.Image.fromarray(mask)))
    assert decoded.mode == "L"
    np.testing.assert_array_equal(np.asarray(decoded), mask)


def test_chunks_carry_valid_crcs() -> None:
    data = png_bytes(PIL.Image.new("L", (5, 3), 9))
    position, kinds = 8, []
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        crc = int.from_bytes(data[position + 8 + length : position + 12 + length], "big")
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_other_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="not 'RGB'"):
        png_bytes(PIL.Image.new("RGB", (2, 2)))


def _draw_scene(image: PIL.Image.Image) -> None:
    draw = PIL.ImageDraw.Draw(image)
    draw.polygon([(1.5, 2.0), (30.2, 4.0), (18.0, 25.7)], outline=3, fill=3)
    draw.line([(0, 20), (39, 10)], fill=7, width=10, joint="curve")
    draw.ellipse((20, 15, 32, 27), outline=255, fill=255)


def test_scanline_canvas_draws_like_a_plain_image_and_encodes_in_place() -> None:
    mapped, plain = scanline_canvas(40, 30), PIL.Image.new("L", (40, 30), 0)
    for image in (mapped, plain):
        _draw_scene(image)
        with_voc_palette(image)
    np.testing.assert_array_equal(np.asarray(mapped), np.asarray(plain))
    assert png.mapped_scanlines(mapped) is not None  # the zero-copy path is taken
    assert png_bytes(mapped) == png_bytes(plain)
    decoded = _decode(png_bytes(mapped))
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(plain))


def test_copies_of_a_scanline_canvas_fall_back_to_exporting_pixels() -> None:
    canvas = scanline_canvas(12, 5)
    _draw_scene(canvas)
    copy = canvas.copy()
    assert png.mapped_scanlines(copy) is None
    np.testing.assert_array_equal(np.asarray(_decode(png_bytes(copy))), np.asarray(canvas))
