"""`segkit split`: stratified, grouped, stable train/val/test (or K-fold) split files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from segkit.cli._common import (
    JSON_HELP,
    console,
    err_console,
    escape,
    examples,
    existing_folder,
    fits,
    print_json,
    progress_bar,
    titled_table,
)
from segkit.defaults import DEFAULT_TEST

if TYPE_CHECKING:
    from rich.table import Table

    from segkit.split import SplitStats
    from segkit.split_stage import SplitSummary


def _cell(summary: SplitSummary, stats: SplitStats, class_id: int) -> str:
    count = stats.images_with.get(class_id, 0)
    share = f"{summary.pixel_share(stats, class_id):.1%} ({count})"
    return share if count else f"[red]{share}[/]"


def _table(summary: SplitSummary, *, class_columns: bool = True) -> Table:
    title = f"segkit split → {escape(str(summary.root))}"
    caption = (
        "class columns: share of the class's labelled pixels in the split (images containing it)"
    )
    if summary.folds:
        caption += "; fold k validates on its row and trains on the other folds"
    table = titled_table(
        title=title, caption=caption if class_columns else None, header_style="bold"
    )
    table.add_column("split", no_wrap=True)
    for header in ("images", "share", "target", "groups"):
        table.add_column(header, justify="right", min_width=len(header))
    names = summary.class_names.values() if class_columns else ()
    for name in names:
        table.add_column(escape(name), justify="right", no_wrap=True)
    total = summary.images
    for stats in summary.splits:
        cells = [
            escape(stats.name),
            str(stats.images),
            f"{stats.images / total:.1%}" if total else "-",
            f"{stats.target:.1%}",
            str(stats.groups),
        ]
        if class_columns:
            cells += [_cell(summary, stats, class_id) for class_id in summary.class_names]
        table.add_row(*cells)
    return table


def _class_rows(summary: SplitSummary) -> Table:
    """The class columns turned into rows: one row per class, one column per split."""
    from rich.table import Table

    table = Table(  # its caption is prose: it may wrap
        caption="share of the class's labelled pixels in the split (images containing it)",
        header_style="bold",
    )
    table.add_column("class", no_wrap=True)
    for stats in summary.splits:
        table.add_column(escape(stats.name), justify="right", no_wrap=True)
    for class_id, name in summary.class_names.items():
        table.add_row(escape(name), *(_cell(summary, stats, class_id) for stats in summary.splits))
    return table


def _print_tables(summary: SplitSummary) -> None:
    wide = _table(summary)
    if fits(wide):
        console.print(wide)
    else:
        console.print(_table(summary, class_columns=False))
        console.print(_class_rows(summary))


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""

    @app.command(
        "split",
        epilog=examples(
            "segkit split dataset/ --val 0.2 --test 0.1 --seed 0",
            r"segkit split dataset/ --group-by '^(patient\d+)_' --folds 5",
        ),
    )
    def split_command(
        dataset: Annotated[
            Path,
            typer.Argument(
                parser=existing_folder("dataset folder"),
                help="VOC-layout dataset folder (JPEGImages/, SegmentationClass/).",
            ),
        ],
        val: Annotated[
            float | None,
            typer.Option(
                help="Validation fraction, in (0, 1); 0.2 when not given. Not with --folds."
            ),
        ] = None,
        test: Annotated[
            float, typer.Option(help="Test fraction, in [0, 1); 0 makes no test split.")
        ] = DEFAULT_TEST,
        seed: Annotated[int, typer.Option(help="Seed: same seed + same data → same files.")] = 0,
        group_by: Annotated[
            str | None,
            typer.Option(
                help=r"Regex on the stem; its first capture group names the group, e.g. '^(patient\d+)_'."
            ),
        ] = None,
        groups: Annotated[
            Path | None,
            typer.Option(
                help="CSV of stem,group rows. Default grouping (without this or --group-by): "
                "near-duplicate images."
            ),
        ] = None,
        folds: Annotated[
            int | None,
            typer.Option(help="Write K cross-validation folds (fold{k}_train/val.txt)."),
        ] = None,
        reshuffle: Annotated[
            bool,
            typer.Option("--reshuffle", help="Start over instead of keeping existing assignments."),
        ] = False,
        workers: Annotated[
            int | None,
            typer.Option(help="Worker processes (default: all usable cores)."),
        ] = None,
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Split a dataset into train/val/test: stratified by class, grouped, stable.

        Writes ImageSets/Segmentation/{train,val,test,trainval}.txt (one stem per line)
        and records the split in segkit.json, or in ImageSets/Segmentation/splits.json
        when the folder has no manifest.

        Re-running keeps every existing assignment and places only new images.
        """
        from segkit.split_stage import SplitOptions, split_dataset

        options = SplitOptions(
            val=val,
            test=test,
            seed=seed,
            group_by=group_by,
            groups_csv=groups,
            folds=folds,
            reshuffle=reshuffle,
            workers=workers,
        )
        with progress_bar("Reading masks", quiet=json_output) as progress:
            summary = split_dataset(dataset, options, progress)
        if json_output:
            print_json(summary.to_dict())
            return
        _print_tables(summary)
        for line in summary.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
        kept = f"kept {summary.kept}, placed {summary.placed}" if summary.kept else ""
        groups_line = f"{summary.images} images in {summary.groups} groups ({summary.grouping})"
        line = ", ".join(part for part in (groups_line, kept) if part)
        console.print(escape(line), soft_wrap=True)
        if summary.written:
            folder = f"{Path(summary.written[0]).parent}/"
            names = " ".join(Path(path).name for path in summary.written)
            files = f"wrote {folder} {names}"
        else:
            files = "split files already up to date"
        if summary.removed:
            files += f"; removed {' '.join(Path(path).name for path in summary.removed)}"
        console.print(escape(f"{files}; recorded in {summary.record}"), soft_wrap=True)
