"""Shims for the Python versions segkit supports (3.10 and newer)."""

from __future__ import annotations

import sys


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)``; Python 3.10 lacks the method but reads ``__notes__`` alike."""
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:
        error.__notes__ = [*getattr(error, "__notes__", ()), note]
