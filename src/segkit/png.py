"""A minimal, fast PNG writer for label masks (palette, 8-bit and 16-bit grayscale).

Masks are long runs of equal bytes, which deflate's run-length strategy compresses
both fastest and smallest. Pillow's encoder runs the system zlib; zlib-ng implements
the same strategy about 6× faster (1.0 → 0.17 ms for a 1024×768 mask, same size), and
mask PNG encoding was a third of `segkit convert`'s time per image. So segkit writes the
few PNG chunks itself and uses zlib-ng when it is installed, the standard zlib when not.
Reading stays with Pillow.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import PIL.Image

try:  # a core dependency; the fallback keeps exotic platforms without wheels working
    from zlib_ng import zlib_ng as _deflate
except ImportError:  # pragma: no cover - exercised only where zlib-ng is missing
    _deflate = zlib  # type: ignore[assignment]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PALETTE, _GRAY = 3, 0
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _scanlines(rows: np.ndarray) -> bytes:
    """Rows prefixed with filter type 0 (none): filters do not help runs of labels."""
    height, width = rows.shape
    out = np.zeros((height, width + 1), dtype=np.uint8)
    out[:, 1:] = rows
    return out.tobytes()


def _compress(data: bytes) -> bytes:
    compressor = _deflate.compressobj(6, _deflate.DEFLATED, 15, 8, _deflate.Z_RLE)
    return compressor.compress(data) + compressor.flush()


def png_bytes(image: PIL.Image.Image) -> bytes:
    """Encode a "P" (with its palette), "L" or 16-bit grayscale image as PNG.

    >>> import io
    >>> image = PIL.Image.new("L", (3, 2), 7)
    >>> PIL.Image.open(io.BytesIO(png_bytes(image))).getpixel((2, 1))
    7
    """
    width, height = image.size
    if image.mode in ("P", "L"):
        rows = np.asarray(image, dtype=np.uint8)
        depth, colour = 8, _PALETTE if image.mode == "P" else _GRAY
    elif image.mode in _SIXTEEN_BIT_MODES:
        big_endian = np.asarray(image).astype(">u2")
        rows = big_endian.view(np.uint8).reshape(height, 2 * width)
        depth, colour = 16, _GRAY
    else:
        raise ValueError(f"png_bytes writes P, L or 16-bit images, not {image.mode!r}")
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    if colour == _PALETTE:
        palette = bytes(image.getpalette() or [])
        entries = max(1, min(256, len(palette) // 3))
        chunks.append(_chunk(b"PLTE", palette[: 3 * entries].ljust(3 * entries, b"\0")))
    chunks.append(_chunk(b"IDAT", _compress(_scanlines(rows))))
    chunks.append(_chunk(b"IEND", b""))
    return _SIGNATURE + b"".join(chunks)
