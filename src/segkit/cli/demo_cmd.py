"""`segkit demo`: the whole chain on the bundled sample data, one line per stage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from segkit.cli._common import JSON_HELP, console, err_console, examples, print_json
from segkit.cli.train_cmd import _Renderer
from segkit.defaults import DEMO_CROP, DEMO_MINUTES, DEMO_MODEL

if TYPE_CHECKING:
    from segkit.demo import DemoEvent


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def stage_line(stage: str, summary: dict[str, Any]) -> str:
    """What one finished stage did, in a few words."""
    if stage == "sample data":
        return f"{summary['annotations']} labelme files in {summary['folder']}"
    if stage == "convert":
        failed = f", {len(summary['failures'])} failed" if summary["failures"] else ""
        return f"{summary['images']} images, classes {', '.join(summary['classes'])}{failed}"
    if stage == "validate":
        return f"{summary['samples']} samples: {summary['errors']} errors, {summary['warnings']} warnings"
    if stage == "split":
        return ", ".join(f"{s['name']} {s['images']}" for s in summary["splits"])
    if stage == "weights":
        weights = ", ".join(f"{w:.2f}" for w in summary["class_weights"])
        return f"class weights {weights}; border maps in {summary['maps_dir']}"
    if stage == "train":
        return (
            f"{summary['epochs']} epochs on {summary['device']}, best val mIoU "
            f"{_fmt(summary['best_score'])} at epoch {summary['best_epoch']}"
        )
    if stage == "report":
        return f"{summary['images']} {summary['split']} images scored"
    if stage == "predict":
        return (
            f"{summary['predicted']} test images: masks, overlays and labelme JSON in "
            f"{summary['output']}"
        )
    return ""


class _Printer:
    """Stage lines on stderr; the training stage's epochs through train's own renderer."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.train = _Renderer(quiet)

    def __call__(self, event: DemoEvent) -> None:
        if event.kind == "train":
            self.train(event.train_event)
            return
        if self.quiet:
            return
        if event.kind == "stage_start":
            err_console.print(f"[bold]{escape(event.stage)}[/] …", soft_wrap=True)
        elif event.kind == "stage_end":
            self.train.close()
            line = escape(stage_line(event.stage, event.summary))
            err_console.print(
                f"[bold]{escape(event.stage)}[/] done in {event.seconds:.1f}s: {line}",
                soft_wrap=True,
            )


def _table(summary: Any) -> Table:
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
        ("your own data", "segkit convert ANNOTATIONS -o DATASET (see docs/tutorial.md)"),
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

        The sample data (48 synthetic labelme annotations) is generated into
        OUTPUT/annotations; the dataset, run, report and predictions follow in OUTPUT.
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
        printer = _Printer(quiet=json_output)
        try:
            summary = demo(output, options, on_event=printer)
        finally:
            printer.train.close()
        if json_output:
            print_json(summary.to_dict())
        else:
            console.print(_table(summary))
