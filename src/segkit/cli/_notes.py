"""Notes from the stages (``SegkitNote`` warnings) as ``note: …`` lines on stderr."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import typer

from segkit.errors import SegkitNote


@contextlib.contextmanager
def notes_on_stderr() -> Iterator[None]:
    """Show every ``SegkitNote`` raised in the block as one ``note:`` line, other warnings as usual."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", SegkitNote)
        show = warnings.showwarning

        def show_note(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, SegkitNote):
                typer.echo(f"note: {message}", err=True)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = show_note
        yield
