"""Short English for messages: bounded lists and counted nouns."""

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
