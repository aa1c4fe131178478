"""The ``segkit`` command line: one module per command, each only parses options and renders.

Stage logic lives in the pure core modules; the command modules in this package are
the only place that imports Typer.
"""

from __future__ import annotations

from segkit.cli import _startup

_previous_sigint = _startup.quiet_startup()  # Ctrl-C while importing: no traceback

from typing import Annotated  # noqa: E402

import typer  # noqa: E402

import segkit  # noqa: E402
from segkit.cli import (  # noqa: E402
    _interrupt,
    _notes,
    convert_cmd,
    demo_cmd,
    models_cmd,
    predict_cmd,
    report_cmd,
    run_cmd,
    split_cmd,
    train_cmd,
    validate_cmd,
    weights_cmd,
)
from segkit.cli._common import SegkitGroup  # noqa: E402

app = typer.Typer(
    cls=SegkitGroup,
    name="segkit",
    help="labelme annotations → VOC dataset → trained segmentation model → honest metrics.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"segkit {segkit.__version__}")  # looked up only when asked
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """segkit: from labelme annotations to a trained, evaluated segmentation model."""


for _module in (
    convert_cmd,
    validate_cmd,
    split_cmd,
    weights_cmd,
    train_cmd,
    models_cmd,
    report_cmd,
    predict_cmd,
    run_cmd,
    demo_cmd,
):
    _module.register(app)
_startup.end_startup(_previous_sigint)


def main() -> None:
    """Console-script entry point (Ctrl-C: one line, exit 130)."""
    with _interrupt.ctrl_c_exits_130(), _notes.notes_on_stderr():
        app()
