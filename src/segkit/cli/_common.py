"""The layer every command shares: consoles, errors, exit codes, ``--json``, path arguments.

Exit codes, the same for every command (``docs/cli.md`` lists them):

====  ===================================================================================
0     success
1     data problems: some input could not be used (bad files, validate errors, ...)
2     usage errors: an unknown option or value, a path that does not exist or is of the
      wrong kind, an empty path, ``--workers`` < 1, conflicting options
130   interrupted (Ctrl-C)
====  ===================================================================================

How a command adopts it (``train``, ``report`` and ``predict`` do the same)::

    def register(app: typer.Typer) -> None:
        @app.command("report", epilog=examples("segkit report runs/a -o report/"))
        def report_command(
            run: Annotated[Path, typer.Argument(parser=existing_folder("run folder"))],
            workers: Annotated[int | None, typer.Option(min=1, help=...)] = None,
            json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        ) -> None:
            options = ReportOptions(...)             # raises OptionError → exit 2
            with progress_bar("Reporting", quiet=json_output) as progress:
                summary = report(run, options, progress)   # DatasetError → exit 1
            if json_output:
                print_json(summary.to_dict())
            else:
                console.print(table_of(summary))
            if not summary.ok:
                raise typer.Exit(EXIT_DATA)

The command never catches ``SegkitError``: :class:`SegkitGroup` (the app's group class)
turns it, click's usage errors and Ctrl-C into one ``error: …`` line on stderr, the exit
code above and, under ``--json``, a JSON document on stdout
(``{"ok": false, "exit_code": N, "errors": [...]}``), so stdout always parses.

When stdout is not a terminal, :data:`console` never wraps or cuts: tables are as wide
as their content (a file name stays on one line whatever ``COLUMNS`` says).
:func:`fits` tells a command whether a wide table fits the terminal's width, so it can
print its columns as rows instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from segkit.cli._interrupt import EXIT_INTERRUPTED, Interrupted
from segkit.errors import OptionError, SegkitError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2

#: Help text of every command's ``--json`` flag.
JSON_HELP = "Print one JSON document on stdout (also when the command fails)."
#: Width of a console that does not write to a terminal: wide enough never to wrap.
_PIPE_WIDTH = 100_000


def _console_class() -> type[Console]:
    from rich.console import Console, ConsoleDimensions

    class _Console(Console):
        """A rich console that, when not writing to a terminal, never wraps or truncates."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # rich reads COLUMNS into its width; only a width passed here is fixed.
            self._fixed_width = kwargs.get("width") is not None

        @property
        def size(self) -> ConsoleDimensions:
            size = super().size
            if self.is_terminal or self._fixed_width:
                return size
            return ConsoleDimensions(_PIPE_WIDTH, size.height)

        @size.setter
        def size(self, new_size: tuple[int, int]) -> None:
            Console.size.fset(self, new_size)  # type: ignore[attr-defined]

        @property
        def nominal_width(self) -> int:
            """The terminal's width (``COLUMNS``, else 80 off a terminal) tables should fit."""
            return super().size.width

    return _Console


class _LazyConsole:
    """Stands for a rich console made on first use: importing rich costs ~35 ms, which
    ``--help`` and ``--json`` runs need not pay. ``.real`` is the console itself."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._real: Console | None = None

    @property
    def real(self) -> Console:
        if self._real is None:
            self._real = _console_class()(highlight=False, **self._options)
        return self._real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


console: Any = _LazyConsole()
err_console: Any = _LazyConsole(stderr=True)


def escape(text: str) -> str:
    """``text`` with rich markup escaped, so user text is never read as markup."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def titled_table(title: str | None = None, caption: str | None = None, **options: Any) -> Table:
    """A rich ``Table`` at least as wide as its title and caption (markup text).

    So a title or caption never wraps inside a file name or number when the columns
    are narrower than it.
    """
    from rich.table import Table
    from rich.text import Text

    widths = [Text.from_markup(text).cell_len for text in (title, caption) if text]
    return Table(title=title, caption=caption, min_width=max(widths, default=None), **options)


def fits(table: Table) -> bool:
    """Whether ``table`` fits the terminal's width without squeezing a column."""
    # Measured unbounded: rich clamps a measurement to the width it is given.
    unbounded = console.options.update(max_width=_PIPE_WIDTH)
    return console.measure(table, options=unbounded).maximum <= console.nominal_width


def exit_code_for(error: SegkitError) -> int:
    """The exit code of a ``SegkitError``: 2 for a bad option or path, else 1."""
    return EXIT_USAGE if isinstance(error, OptionError) else EXIT_DATA


def print_error(message: str) -> None:
    """``error: message`` on stderr, one logical line, user text never read as markup."""
    err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout, without rich markup or wrapping."""
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _fail(argv: Sequence[str], messages: list[str], code: int) -> int:
    for message in messages:
        print_error(message)
    if "--json" in argv:
        print_json({"ok": False, "exit_code": code, "errors": messages})
    return code


class SegkitGroup(TyperGroup):
    """The app's click group: one place that maps every failure to a line and an exit code."""

    def get_params(self, ctx: Any) -> Any:
        from segkit.cli._coerce import install

        params = super().get_params(ctx)
        install(params)  # option values converted without pydantic's import
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            from segkit.cli._coerce import install

            install(command.get_params(ctx))  # the command's options, its --help too
        return command

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(
                args=argv or ["--help"],
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else EXIT_OK
            if not argv:
                code = EXIT_USAGE  # help was shown because nothing was asked
            elif code == EXIT_INTERRUPTED:  # typer's answer to Ctrl-C
                code = _fail(argv, ["interrupted"], EXIT_INTERRUPTED)
        except _PathError as error:
            code = _fail(argv, [error.message], EXIT_USAGE)
        except typer.TyperException as error:  # click's usage errors, bad parameters, ...
            # typer checks values with pydantic, which prefixes its messages so.
            message = error.format_message().replace("Value error, ", "")
            code = _fail(argv, [message], error.exit_code)
        except SegkitError as error:  # several lines = several problems, one line each
            code = _fail(argv, str(error).splitlines() or [str(error)], exit_code_for(error))
        except Interrupted:
            # cli._interrupt's handler prints what was kept and exits 130.
            if "--json" in argv:
                print_json({"ok": False, "exit_code": EXIT_INTERRUPTED, "errors": ["interrupted"]})
            raise
        except (KeyboardInterrupt, typer.Abort):
            code = _fail(argv, ["interrupted"], EXIT_INTERRUPTED)
        except Exception as error:  # a bug in segkit (or a broken install), not bad input
            import traceback

            traceback.print_exc()  # what a bug report needs
            first = (str(error).splitlines() or [""])[0]
            code = _fail(argv, [f"internal error: {type(error).__name__}: {first}"], EXIT_DATA)
        if not standalone_mode:
            return code
        sys.exit(code)


def examples(*lines: str) -> str:
    """A help epilog of example command lines, kept as written (not re-wrapped)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


class _PathError(typer.BadParameter):
    """A path argument that is empty, missing or of the wrong kind; its message names it."""


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not str(value).strip():
        raise _PathError("an empty path was given; name a file or folder")
    return Path(str(value))


def existing_folder(what: str = "folder") -> Callable[[Any], Path]:
    """``parser=`` of a folder argument that must exist; ``what`` names it in the error."""

    def parse(value: Any) -> Path:
        path = _path(value)
        if not path.is_dir():
            problem = "is not a folder" if path.exists() else f"{what} not found"
            raise _PathError(f"{path}: {problem}")
        return path

    return parse


def existing_file(value: Any) -> Path:
    """``parser=`` of a file argument that must exist; a checkpoint may omit its suffix."""
    path = _path(value)
    candidates = (path, path.with_name(path.name + ".safetensors"))
    if not any(candidate.is_file() for candidate in candidates):
        problem = "is a folder, not a file" if path.is_dir() else "file not found"
        raise _PathError(f"{path}: {problem}")
    return path


def folder(value: Any) -> Path:
    """``parser=`` of a folder that may not exist yet (an output); never the empty path."""
    return _path(value)


@contextlib.contextmanager
def progress_bar(description: str, *, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields the ``(done, total)`` callback stages accept.

    Off a terminal (a log file, a pipe) there is no bar: rich would leave a blank line.
    """
    if quiet or not err_console.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console.real, transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
