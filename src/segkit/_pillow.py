"""Pillow use every stage shares: what a corrupt file raises, the pixel limit, EXIF tags."""

from __future__ import annotations

import contextlib
import re
import struct
import warnings
import zlib
from collections.abc import Iterator

import PIL.Image

#: EXIF (and TIFF) tag holding the orientation, 1..8.
EXIF_ORIENTATION_TAG = 0x0112

#: Everything Pillow and its codecs raise on corrupt or hostile image bytes. Besides
#: OSError, truncated or malformed headers surface as these (seen on fuzzed PNG, JPEG,
#: TIFF and BMP files); the decompression-bomb error only where the limit is in force.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    ZeroDivisionError,
    struct.error,
    zlib.error,
    PIL.Image.DecompressionBombError,
)


#: Pillow names an in-memory file by its Python repr, which means nothing to a user.
_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def decode_error_text(error: BaseException) -> str:
    """What went wrong decoding an image, in words: no ``<_io.BytesIO object at 0x…>``.

    >>> import io
    >>> try:
    ...     PIL.Image.open(io.BytesIO(b"not an image"))
    ... except PIL.UnidentifiedImageError as error:
    ...     print(decode_error_text(error))
    not an image format Pillow can read
    """
    if isinstance(error, PIL.UnidentifiedImageError):
        return "not an image format Pillow can read"
    text = _OBJECT_REPR.sub("", str(error)).strip()
    return text or type(error).__name__


@contextlib.contextmanager
def pixel_limit_lifted() -> Iterator[None]:
    """Let Pillow open an image of any size inside the block.

    ``segkit convert`` applies its own ``--max-pixels`` check, naming the file; later
    stages read files that are already in the dataset, so they must not refuse a large
    one. Scoped rather than set at import, so importing segkit never weakens the
    decompression-bomb guard of the caller's own Pillow use.
    """
    saved = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            yield
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = saved
