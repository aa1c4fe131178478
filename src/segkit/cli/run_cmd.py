"""`segkit run`: the whole chain on a labelme folder, one line per stage, a final table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segkit.cli._common import (
    JSON_HELP,
    console,
    err_console,
    escape,
    examples,
    existing_file,
    existing_folder,
    folder,
    print_json,
)
from segkit.cli._interrupt import EXIT_INTERRUPTED
from segkit.cli.train_cmd import _Renderer

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

EXAMPLES = examples(
    "segkit run annotations/ -o work/",
    "segkit run annotations/ -o work/ --predict unlabeled/",
    "segkit run annotations/ -o work/ --model unet-small --time 30",
    "segkit run --config work/segkit-run.toml",
)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def stage_line(stage: str, summary: dict[str, Any]) -> str:
    """What one finished stage did, in a few words."""
    if stage == "sample data":
        return f"{summary['annotations']} labelme files in {summary['folder']}"
    if stage == "convert":
        return (
            f"{summary['images']} images ({summary['converted']} converted, "
            f"{summary['up_to_date']} up to date), classes {', '.join(summary['classes'])}"
        )
    if stage == "validate":
        return f"{summary['samples']} samples: {summary['errors']} errors, {summary['warnings']} warnings"
    if stage == "split":
        return ", ".join(f"{s['name']} {s['images']}" for s in summary["splits"])
    if stage == "weights":
        weights = ", ".join(f"{w:.2f}" for w in summary["class_weights"])
        maps = f"; border maps in {summary['maps_dir']}" if summary.get("maps_dir") else ""
        return f"class weights {weights}{maps}"
    if stage == "train":
        return (
            f"{summary['epochs']} epochs on {summary['device']}, best val mIoU "
            f"{_fmt(summary['best_score'])} at epoch {summary['best_epoch']}"
        )
    if stage == "report":
        return "; ".join(
            f"{split} mIoU {_fmt(row['mIoU'])} on {row['images']} images"
            for split, row in summary.items()
            if isinstance(row, dict) and "mIoU" in row
        )
    if stage == "predict":
        return (
            f"{summary['predicted']} images predicted ({summary['skipped_up_to_date']} up to "
            f"date): masks, overlays and labelme JSON in {summary['output']}"
        )
    return ""


class Printer:
    """Stage lines on stderr (stage k of n), each stage's own progress bar, and the
    training stage's epochs through train's renderer."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.train = _Renderer(quiet)
        self.progress: Progress | None = None
        self.task: Any = None

    def _place(self, event: Any) -> str:
        return f"[{event.index}/{event.total}] " if event.total else ""

    def __call__(self, event: Any) -> None:
        if event.kind == "train":
            self.train(event.train_event)
            return
        if self.quiet:
            return
        name = f"{self._place(event)}[bold]{escape(event.stage)}[/]"
        if event.kind == "progress":
            self._progress(event)
        elif event.kind == "stage_start":
            why = f" ({escape('; '.join(event.reasons))})" if event.reasons else ""
            err_console.print(f"{name} …{why}", soft_wrap=True)
        elif event.kind == "stage_skip":
            err_console.print(f"{name}: up to date, skipped", soft_wrap=True)
        elif event.kind == "stage_end":
            self.close()
            line = escape(stage_line(event.stage, event.summary))
            err_console.print(f"{name} done in {event.seconds:.1f}s: {line}", soft_wrap=True)

    def _progress(self, event: Any) -> None:
        if not err_console.is_terminal:
            return
        if self.progress is None:
            from rich.progress import (  # here: `segkit --help` need not load it
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=err_console.real, transient=True,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task(f"  {event.stage}", total=None)
        self.progress.update(self.task, completed=event.done, total=event.count)

    def close(self) -> None:
        self.train.close()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(summary: Any, title: str) -> Table:
    """The headline numbers and where everything is."""
    from rich.table import Table

    from segkit.pipeline.runner import shown

    data = summary.to_dict()
    table = Table(title=escape(title), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    ran = ", ".join(data["ran"]) or "nothing (all up to date)"
    rows = [
        ("images", str(data["images"])),
        ("classes", ", ".join(data["classes"] or [])),
        ("val mIoU", _fmt(data["mIoU"])),
        ("object F1 (IoU ≥ 0.5)", _fmt(data["object_f1"])),
    ]
    if data["test_mIoU"] is not None:
        rows.append(("test mIoU", _fmt(data["test_mIoU"])))
    paths = data["paths"]
    rows += [
        ("ran", ran),
        ("device", data["device"]),
        ("time", f"{sum(data['seconds'].values()) / 60:.1f} min"),
        ("config", shown(Path(data["config"]))),
        ("dataset", shown(Path(paths["dataset"]))),
        ("run", shown(Path(paths["run"]))),
        ("report", shown(Path(paths["report_html"]))),
    ]
    if paths["predictions"]:
        rows.append(("predictions", shown(Path(paths["predictions"]))))
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


def register(app: typer.Typer) -> None:
    """Add `segkit run` to app."""

    @app.command("run", epilog=EXAMPLES)
    def run_command(
        input: Annotated[
            Path | None,
            typer.Argument(
                parser=existing_folder("labelme folder"),
                help="Folder of labelme JSON files and their images (or in --config).",
                show_default=False,
            ),
        ] = None,
        output: Annotated[
            Path | None,
            typer.Option(
                "--output", "-o", parser=folder, help="Folder to write (new, empty, or a run)."
            ),
        ] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                parser=existing_file, help="TOML file, one table per stage (segkit-run.toml)."
            ),
        ] = None,
        predict: Annotated[
            Path | None,
            typer.Option(
                parser=existing_folder("images folder"),
                help="Then predict these images: masks, labelme JSON, uncertainty ranking.",
            ),
        ] = None,
        model: Annotated[str | None, typer.Option(help="Registry model (segkit models).")] = None,
        epochs: Annotated[int | None, typer.Option(help="Epochs to train [default: 50].")] = None,
        time: Annotated[
            float | None,
            typer.Option("--time", help="Train for this many minutes instead of --epochs."),
        ] = None,
        device: Annotated[
            str | None, typer.Option(help="auto, cpu, cuda or cuda:N (train, report, predict).")
        ] = None,
        val: Annotated[float | None, typer.Option(help="Val share [default: 0.2].")] = None,
        test: Annotated[float | None, typer.Option(help="Test share [default: 0.1].")] = None,
        seed: Annotated[int | None, typer.Option(help="Seed of the split and training.")] = None,
        name: Annotated[str | None, typer.Option(help="Run name: OUTPUT/runs/NAME.")] = None,
        keep_going: Annotated[
            bool | None,
            typer.Option(
                "--keep-going", help="Continue past validate warnings (never past errors)."
            ),
        ] = None,
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        quiet: Annotated[bool, typer.Option(help="Only warnings and the result.")] = False,
    ) -> None:
        """Run convert → validate → split → weights → train → report (→ predict).

        The resolved options go to OUTPUT/segkit-run.toml before the first stage. Run
        again after an interruption or an edit: up-to-date stages are skipped, training
        resumes, and a changed option reruns exactly the stages it affects.
        """
        from segkit.pipeline.config import resolve
        from segkit.pipeline.runner import run, shown
        from segkit.train.stage import TrainingInterrupted

        tables: dict[str, dict[str, Any]] = {
            "run": {"predict": predict, "name": name, "keep_going": keep_going},
            "split": {"val": val, "test": test, "seed": seed},
            "train": {"model": model, "epochs": epochs, "time_minutes": time, "seed": seed},
        }
        for stage in ("train", "report", "predict"):
            tables.setdefault(stage, {})["device"] = device
        resolved = resolve(input, output, config=config, overrides=tables)
        printer = Printer(quiet or json_output)
        try:
            summary = run(config=resolved, on_event=printer)
        except TrainingInterrupted:
            printer.close()
            again = f"segkit run --config {resolved.config_file}"
            line = f"interrupted during training; state saved. Continue with: {again}"
            err_console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)
            if json_output:
                print_json({"ok": False, "exit_code": EXIT_INTERRUPTED, "errors": [line]})
            raise SystemExit(EXIT_INTERRUPTED) from None
        finally:
            printer.close()
        if json_output:
            print_json(summary.to_dict())
        else:
            console.print(summary_table(summary, f"segkit run → {shown(summary.output)}"))
            console.print(f"next: {escape(summary.next_command())}", soft_wrap=True)
