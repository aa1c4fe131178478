"""Pillow use every stage shares: what a corrupt file raises, the pixel limit, EXIF tags."""

from __future__ import annotations

import contextlib
import os
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
    if isinstance(error, PIL.Image.DecompressionBombError):
        size = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(size.group(1)):,} pixels" if size else "its pixels"
        return (
            f"the image's {pixels} are more than this machine's memory can decode "
            "(a decompression bomb, or a scan to cut into smaller images)"
        )
    text = _OBJECT_REPR.sub("", str(error)).strip()
    return text or type(error).__name__


def memory_pixel_cap() -> int | None:
    """The most pixels an image may have for its decoded copies (up to 4 bytes a pixel,
    twice) to fit in this machine's memory; ``None`` where the memory is unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return max(total // 8, 1) if total > 0 else None


@contextlib.contextmanager
def pixel_limit_lifted(*, within_memory: bool = True) -> Iterator[None]:
    """Let Pillow open any image whose decoded pixels fit in memory inside the block.

    Stages that read files already in a dataset must not refuse a large scan; an image
    too large for the machine's memory (a decompression bomb copied into a dataset by
    hand) still raises ``DecompressionBombError`` when it is opened, before anything is
    decoded. ``within_memory=False`` lifts the limit entirely, for readers that apply
    their own (``convert`` and ``predict``'s ``--max-pixels``, naming the file). Scoped
    rather than set at import, so importing segkit never weakens the decompression-bomb
    guard of the caller's own Pillow use.
    """
    saved = PIL.Image.MAX_IMAGE_PIXELS
    cap = memory_pixel_cap() if within_memory else None
    # Pillow raises above twice its limit and only warns between the two.
    PIL.Image.MAX_IMAGE_PIXELS = None if cap is None else max(cap // 2, 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            yield
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = saved
