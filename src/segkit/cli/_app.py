"""The Typer app: the root options and the commands, built for the command being run.

Typer turns every registered command's signature into click options when the app is
called, which costs milliseconds per option; ``build_app(only=NAME)`` registers just
``NAME`` (the help and behaviour of ``segkit NAME ...`` are the same), and the whole
app is built for ``segkit --help``, an unknown command, the docs and the tests.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from typing import Annotated

import typer
from typer.models import CommandInfo

from segkit.cli._common import SegkitGroup

#: Command name → the module that registers it, in the order ``segkit --help`` lists them.
COMMAND_MODULES = {
    "convert": "convert_cmd",
    "validate": "validate_cmd",
    "split": "split_cmd",
    "weights": "weights_cmd",
    "train": "train_cmd",
    "models": "models_cmd",
    "export": "models_cmd",
    "report": "report_cmd",
    "predict": "predict_cmd",
    "run": "run_cmd",
    "demo": "demo_cmd",
}


def _version_callback(value: bool) -> None:
    if value:
        import segkit

        typer.echo(f"segkit {segkit.__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """segkit: from labelme annotations to a trained, evaluated segmentation model."""


def _listed_only(info: CommandInfo) -> CommandInfo:
    """``info`` with its help kept and its options dropped: enough for the command list."""
    listed = copy.copy(info)
    listed.help = info.help if info.help is not None else inspect.getdoc(info.callback)
    listed.callback = _not_run
    return listed


def _not_run() -> None:  # pragma: no cover - a listed-only command is never invoked
    raise RuntimeError("a command built for the command list was run")


def build_app(only: str | None = None, *, listing: bool = False) -> typer.Typer:
    """The app with every command, or with just ``only`` when that names a command.

    ``listing=True`` keeps every command's name and help but none of its options: what
    ``segkit --help`` and an unknown command's error need, at a tenth of the cost.
    """
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
    app.callback()(_root)
    names = [only] if only in COMMAND_MODULES else list(dict.fromkeys(COMMAND_MODULES.values()))
    for module_name in dict.fromkeys(COMMAND_MODULES.get(n, n) for n in names):
        importlib.import_module(f"segkit.cli.{module_name}").register(app)
    if listing:
        app.registered_commands = [_listed_only(info) for info in app.registered_commands]
    return app
