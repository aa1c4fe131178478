"""`segkit demo`: the whole chain on the bundled sample data, one line per stage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segkit.cli._common import JSON_HELP, console, escape, examples, print_json
from segkit.cli.run_cmd import Printer
from segkit.defaults import DEMO_CROP, DEMO_MINUTES, DEMO_MODEL

if TYPE_CHECKING:
    from rich.table import Table


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _table(summary: Any) -> Table:
    from rich.table import Table

    table = Table(title=escape(f"segkit demo → {summary.output}"), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in (
        ("val mIoU", _fmt(summary.miou)),
        ("object F1 (IoU ≥ 0.5)", _fmt(summary.object_f1)),
        ("device", summary.device),
        ("time", f"{sum(summary.seconds.values()) / 60:.1f} min"),
        ("report", str(summary.report_html)),
        ("predictions", str(summary.output / "predictions")),
        ("your own data", "segkit run ANNOTATIONS -o WORK (see docs/tutorial.md)"),
    ):
        table.add_row(key, escape(value))
    return table


def register(app: typer.Typer) -> None:
    """Add `segkit demo` to app."""

    @app.command(
        "demo",
        epilog=examples("segkit demo", "segkit demo -o demo/ --epochs 5 --device cpu"),
    )
    def demo_command(
        output: Annotated[
            Path,
            typer.Option(
                "--output", "-o", help="Folder to write (new, empty, or an earlier demo)."
            ),
        ] = Path("segkit-demo"),
        epochs: Annotated[
            int | None, typer.Option(help="Train this many epochs instead of --minutes.")
        ] = None,
        minutes: Annotated[
            float, typer.Option(help="Training time budget in minutes.")
        ] = DEMO_MINUTES,
        device: Annotated[
            str, typer.Option(help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
        ] = "auto",
        model: Annotated[str, typer.Option(help="Registry model (segkit models).")] = DEMO_MODEL,
        crop: Annotated[int, typer.Option(help="Training crop side.")] = DEMO_CROP,
        seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
        scenes: Annotated[
            int | None, typer.Option(help="Training scenes to generate [default: 42].")
        ] = None,
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Run convert → validate → split → weights → train → report → predict on sample data.

        `segkit run` with the demo's defaults: the sample data (48 synthetic labelme
        annotations) is generated into OUTPUT/annotations; the dataset, run, report and
        predictions (of the test split) follow in OUTPUT. Run again to carry on.
        """
        from segkit.demo import DemoOptions, demo

        options = DemoOptions(
            epochs=epochs,
            minutes=minutes,
            device=device,
            model=model,
            crop=crop,
            seed=seed,
            scenes=scenes,
        )
        printer = Printer(quiet=json_output)
        try:
            summary = demo(output, options, on_event=printer)
        finally:
            printer.close()
        if json_output:
            print_json(summary.to_dict())
        else:
            console.print(_table(summary))
