"""The ``segkit`` command line: one module per command, each only parses options and renders.

Stage logic lives in the pure core modules; the command modules in this package are
the only place that imports Typer. This module itself imports nothing heavy, so that
``segkit --version`` answers before Typer is loaded, and a command builds only its
own options (``_app``).
"""

from __future__ import annotations

from segkit.cli import _startup

_previous_sigint = _startup.quiet_startup()  # Ctrl-C while importing: no traceback

import sys  # noqa: E402
from typing import TYPE_CHECKING, Any, NoReturn  # noqa: E402

if TYPE_CHECKING:
    import typer

    app: typer.Typer


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole app, every command registered (tests, docs)
        from segkit.cli._app import build_app

        globals()["app"] = whole = build_app()
        return whole
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def entry_point() -> NoReturn:
    """The ``segkit`` executable and ``python -m segkit``: :func:`main`, then a quick exit."""
    from segkit.cli._exit import exit_now

    try:
        main()
    except SystemExit as done:
        exit_now(done.code)
    exit_now(0)


def main() -> None:
    """Run the command line on ``sys.argv`` (Ctrl-C: one line, exit 130); raises
    ``SystemExit`` with the exit status, as a click program does."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        import segkit

        print(f"segkit {segkit.__version__}")
        _startup.end_startup(_previous_sigint)
        return
    from segkit.cli import _interrupt, _notes
    from segkit.cli._app import COMMAND_MODULES, build_app

    command = argv[0] if argv else None
    # Only `segkit COMMAND ...` can run a command (the root options are --version and
    # --help); anything else needs the list of commands, not their options.
    app = build_app(command) if command in COMMAND_MODULES else build_app(listing=True)
    _startup.end_startup(_previous_sigint)
    with _interrupt.ctrl_c_exits_130(), _notes.notes_on_stderr():
        app()
