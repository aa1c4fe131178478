"""Text helpers for messages and names: bounded lists, counted nouns, UTF-8 checks."""

from __future__ import annotations

from collections.abc import Sequence


def short_list(items: Sequence[object], limit: int = 8, sep: str = ", ") -> str:
    """The first ``limit`` items joined by ``sep``, then how many were left out.

    >>> short_list(["a", "b", "c"], 2)
    'a, b (and 1 more)'
    >>> short_list([1, 2])
    '1, 2'
    """
    shown = sep.join(str(item) for item in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless the count is one.

    >>> plural(1, "image"), plural(3, "image")
    ('1 image', '3 images')
    """
    return f"{count} {noun}{'' if count == 1 else 's'}"


def is_unicode(text: str) -> bool:
    """False for text holding lone surrogates: a JSON ``\\ud800`` escape, or file-name
    bytes that are not UTF-8 (Python decodes those to surrogates).

    >>> is_unicode("café"), is_unicode("caf\\udce9")
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` with lone surrogates (undecodable file-name bytes) as ``\\udcxx`` escapes.

    Such text cannot be encoded as UTF-8, so it could be neither printed nor saved.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
