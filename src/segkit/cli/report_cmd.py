"""`segkit report`: score a run or a folder of predicted masks; compare two reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segkit.cli._common import (
    console,
    escape,
    examples,
    existing_folder,
    folder,
    print_json,
    progress_bar,
)
from segkit.errors import OptionError

if TYPE_CHECKING:
    from rich.table import Table

    from segkit.report.stage import CompareSummary, ReportSummary


def _class_table(result: dict[str, Any]) -> Table:
    from rich.table import Table

    from segkit.report import tables

    objects = bool(result.get("objects"))
    table = Table(
        title=escape(
            f"segkit report: {result['provenance']['source']} (split {result['split']}, "
            f"{result['images']} images)"
        ),
        header_style="bold",
        caption="— = undefined (class absent from ground truth and prediction); "
        "all scores from the dataset-level confusion matrix"
        + (f"\n{escape(note)}" if (note := tables.object_note(result)) else ""),
    )
    columns = ["id", "class", "IoU", "precision", "recall", "Dice", "GT px", "pred px"]
    if objects:
        columns += ["object F1", "merges", "splits"]
    for name in columns:
        table.add_column(name, justify="left" if name == "class" else "right")
    for row in tables.per_class_rows(result):
        cells = [str(row["id"]), escape(row["class"])]
        cells += [tables.format_score(row[k]) for k in ("iou", "precision", "recall", "dice")]
        cells += [f"{row['gt_pixels']:,}", f"{row['pred_pixels']:,}"]
        if objects:
            cells += [tables.format_score(row["object_f1"])]
            cells += ["—" if row[k] is None else str(row[k]) for k in ("merges", "splits")]
        table.add_row(*cells)
    head = tables.summary(result)
    table.add_section()
    # Means sit under the per-class column they average (mAcc is the mean recall).
    means = ["", f"[bold]mean of {head['mIoU_classes']} classes[/]"]
    means += [tables.format_score(head["mIoU"]), "", tables.format_score(head["mAcc"])]
    means += [tables.format_score(head["mDice"]), "", ""]
    table.add_row(*means, *([""] * (3 if objects else 0)))
    return table


def _confusion_table(result: dict[str, Any]) -> Table | None:
    import numpy as np
    from rich.table import Table

    from segkit.report import tables

    matrix = np.array(result["confusion"]["matrix"])
    if len(matrix) > tables.MAX_PRINTED_CLASSES:
        return None
    names = [escape(tables.class_name(result["classes"], i)) for i in range(len(matrix))]
    table = Table(
        title="confusion matrix, row-normalised (rows: ground truth)", header_style="bold"
    )
    table.add_column("gt \\ pred", justify="left")
    for name in names:
        table.add_column(name, justify="right")
    for name, row in zip(names, tables.normalized_rows(matrix), strict=True):
        table.add_row(name, *[tables.format_score(v, 2) for v in row])
    return table


def _render_report(summary: ReportSummary) -> None:
    from segkit.report import tables

    result = summary.report
    console.print(_class_table(result))
    head = tables.summary(result)
    console.print(
        "  ".join(f"[bold]{key}[/] {tables.format_score(head[key])}" for key in tables.SUMMARY_KEYS)
        + f"  (mIoU of {head['mIoU_classes']}, mAcc of {head['mAcc_classes']} classes)"
    )
    confusion = _confusion_table(result)
    if confusion is not None:
        console.print(confusion)
    if result["missing"]:
        console.print(f"[yellow]{len(result['missing'])} prediction(s) missing, not scored[/]")
    console.print(f"report written to {escape(str(summary.output))}", soft_wrap=True)


def _render_compare(summary: CompareSummary) -> None:
    from rich.table import Table

    from segkit.report import tables

    table = Table(title=escape(f"B − A: A = {summary.a}, B = {summary.b}"), header_style="bold")
    table.add_column("class", justify="left")
    for key in tables.DELTA_KEYS:
        table.add_column(f"Δ {key}", justify="right")
    for row in summary.rows:
        table.add_row(
            escape(row["class"]),
            *[_signed(row[f"{k}_delta"]) for k in tables.DELTA_KEYS],
        )
    table.add_section()
    for key, value in summary.headline.items():
        table.add_row(f"[bold]{key}[/]", _signed(value["delta"]), "", "", "", "")
    console.print(table)
    console.print(f"deltas written to {escape(str(summary.output))}", soft_wrap=True)


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""

    @app.command(
        "report",
        epilog=examples(
            "segkit report runs/a",
            "segkit report runs/a --split test --checkpoint last --tile 512",
            "segkit report --pred masks/ --gt dataset/ -o masks-report/",
            "segkit report --compare runs/a/report runs/b/report",
        ),
    )
    def report_command(
        run: Annotated[
            Path | None,
            typer.Argument(
                parser=existing_folder("run folder"),
                help="Run folder (config.json + checkpoints/); omit with --pred.",
            ),
        ] = None,
        pred: Annotated[
            Path | None,
            typer.Option(
                parser=existing_folder("predictions folder"),
                help="Folder of predicted masks <id>.png (palette, 8-bit or RGB).",
            ),
        ] = None,
        gt: Annotated[
            Path | None,
            typer.Option(
                parser=existing_folder("dataset folder"),
                help="Dataset to score against (required with --pred; overrides the run's dataset).",
            ),
        ] = None,
        split: Annotated[
            str | None,
            typer.Option(help="Split to score, or 'all'. Default: val (all without split files)."),
        ] = None,
        checkpoint: Annotated[
            str, typer.Option(help="Checkpoint of the run: best or last.")
        ] = "best",
        output: Annotated[
            Path | None,
            typer.Option(
                "-o",
                "--output",
                parser=folder,
                help="Report folder (default: RUN/report, or PRED-report next to the predictions).",
            ),
        ] = None,
        allow_missing: Annotated[
            bool, typer.Option("--allow-missing", help="Score the predictions that exist.")
        ] = False,
        worst: Annotated[int, typer.Option(min=0, help="Overlays of the N worst images.")] = 8,
        classes: Annotated[
            str | None,
            typer.Option(help="Comma-separated class names or ids the means use."),
        ] = None,
        exclude_background: Annotated[
            bool, typer.Option("--exclude-background", help="Leave class 0 out of the means.")
        ] = False,
        tile: Annotated[
            int | None,
            typer.Option(min=1, help="Run mode: tile size in pixels (default: whole image)."),
        ] = None,
        overlap: Annotated[float, typer.Option(help="Run mode: tile overlap.")] = 0.25,
        batch_size: Annotated[int, typer.Option(min=1, help="Run mode: tiles per batch.")] = 4,
        tta: Annotated[
            bool, typer.Option("--tta", help="Run mode: average flipped passes.")
        ] = False,
        device: Annotated[str, typer.Option(help="Run mode: auto, cpu, cuda, mps.")] = "auto",
        compare_reports: Annotated[
            tuple[Path, Path] | None,
            typer.Option("--compare", help="Two reports (folders or report.json): B − A."),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Write into a non-empty folder without a report.")
        ] = False,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print report.json (or the deltas) as one JSON document on stdout "
                "(also when the command fails).",
            ),
        ] = False,
    ) -> None:
        """Score a run (its model over a split) or predicted masks (--pred, --gt).

        Writes report.json, per_class.csv, confusion_matrix.csv, per_image.csv, report.md,
        confusion_matrix.png, overlays/ of the worst images and a self-contained
        report.html. Every number comes from the dataset-level confusion matrix.
        """
        from segkit.report.stage import ReportOptions, compare, report

        if compare_reports is not None:
            if run is not None or pred is not None:
                raise OptionError("--compare takes two reports and no RUN or --pred")
            for path in compare_reports:
                if str(path).startswith("-"):  # click took the next option as a path
                    raise OptionError(
                        f"--compare takes two report folders or report.json files (A B), "
                        f"got {str(path)!r} as one"
                    )
                if not path.exists():
                    raise OptionError(f"{path}: report not found")
            result = compare(compare_reports[0], compare_reports[1], output)
            print_json(result.to_dict()) if json_output else _render_compare(result)
            return
        if (run is None) == (pred is None):
            raise OptionError("give a RUN folder, or --pred DIR with --gt DATASET")
        options = ReportOptions(
            mode="run" if pred is None else "predictions",
            gt=gt,
            split=split,
            checkpoint=checkpoint,
            allow_missing=allow_missing,
            worst=worst,
            classes=None if classes is None else tuple(c.strip() for c in classes.split(",")),
            exclude_background=exclude_background,
            device=device,
            inference={"tile": tile, "overlap": overlap, "batch_size": batch_size, "flip_tta": tta},
            force=force,
            command=tuple(sys.argv),
        )
        source = pred if pred is not None else run
        assert source is not None
        with progress_bar("scoring", quiet=json_output) as progress:
            summary = report(source, output, options, progress)
        if json_output:
            print_json(summary.to_dict())
        else:
            _render_report(summary)
