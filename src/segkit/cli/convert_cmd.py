"""`segkit convert`: labelme JSON folder → Pascal-VOC dataset."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from segkit._text import plural
from segkit.cli._common import (
    EXIT_DATA,
    JSON_HELP,
    console,
    escape,
    examples,
    folder,
    print_error,
    print_json,
    progress_bar,
    titled_table,
)
from segkit.defaults import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from segkit.convert_stage import ConvertSummary


class UnknownLabel(str, Enum):
    """What to do with a label that is not in --labels."""

    error = "error"
    ignore = "ignore"
    background = "background"
    skip = "skip"


class ImageFormat(str, Enum):
    """How JPEGImages/ is written."""

    jpg = "jpg"
    png = "png"


def _render(summary: ConvertSummary) -> None:
    # Paths and labels are user data: escape them so "[" is never read as markup.
    table = titled_table(title=f"segkit convert → {escape(str(summary.output))}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("images in dataset", str(summary.images))
    table.add_row("converted now", str(summary.converted))
    table.add_row("up to date (skipped)", str(summary.up_to_date))
    table.add_row("failed", f"[red]{len(summary.failures)}[/]" if summary.failures else "0")
    if summary.removed:
        table.add_row("stale outputs removed", str(len(summary.removed)))
    if summary.skipped:
        table.add_row("skipped", ", ".join(plural(n, kind) for kind, n in summary.skipped.items()))
    for kind, count in sorted(summary.shape_types.items()):
        table.add_row(f"shapes: {kind}", str(count))
    total = sum(summary.class_pixels.values()) or 1
    for name, pixels in summary.class_pixels.items():
        table.add_row(f"pixels: {escape(name)}", f"{pixels} ({100 * pixels / total:.1f}%)")
    console.print(table)
    if summary.labels_discovered:
        names = escape(", ".join(summary.classes))
        console.print(f"classes (discovered, written to labels.txt): {names}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``segkit convert``."""

    @app.command(
        "convert",
        epilog=examples(
            "segkit convert annotations/ -o dataset/ --labels labels.txt",
            "segkit convert annotations/ -o dataset/ --map kitten=cat --viz",
        ),
    )
    def convert_command(
        input_dir: Annotated[
            Path,
            typer.Argument(
                parser=folder, help="Folder of labelme JSON files (searched recursively)."
            ),
        ],
        output: Annotated[
            Path,
            typer.Option("-o", "--output", parser=folder, help="Dataset folder to write."),
        ],
        labels: Annotated[
            str | None,
            typer.Option(
                "--labels",
                help="labels.txt (labelme format) or comma-separated classes; "
                "default: discover from the files.",
            ),
        ] = None,
        label_map: Annotated[
            list[str] | None,
            typer.Option("--map", help="Rename or merge a label: OLD=NEW (repeatable)."),
        ] = None,
        unknown_label: Annotated[
            UnknownLabel,
            typer.Option(
                help="Label not in --labels: stop with an error, paint it ignore (255) or "
                "background (0), or skip the shape."
            ),
        ] = UnknownLabel.error,
        image_format: Annotated[
            ImageFormat,
            typer.Option(help="jpg (JPEG bytes copied when possible) or png (lossless)."),
        ] = ImageFormat.jpg,
        viz: Annotated[bool, typer.Option("--viz", help="Also write overlay images.")] = False,
        workers: Annotated[
            int | None, typer.Option(help="Worker processes (default: all cores).")
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Redo every file; allow a non-segkit folder.")
        ] = False,
        fail_fast: Annotated[
            bool, typer.Option("--fail-fast", help="Stop at the first failing file.")
        ] = False,
        max_pixels: Annotated[
            int, typer.Option(help="Refuse larger images (decompression-bomb guard).")
        ] = DEFAULT_MAX_PIXELS,
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Convert labelme annotations into a Pascal-VOC dataset with palette PNG masks.

        Writes JPEGImages/ (JPEG bytes copied when no rotation is needed), palette PNG
        SegmentationClass/ and SegmentationObject/ (0 background, 255 ignore),
        labels.txt, class_names.txt and segkit.json. An image whose instance ids go
        beyond 254 gets a 16-bit grayscale SegmentationObject PNG (65535 = ignore).
        A re-run converts only what changed.
        """
        from segkit.convert_stage import ConvertOptions, convert, parse_label_map

        options = ConvertOptions(
            labels=labels,
            label_map=parse_label_map(label_map or []),
            unknown_label=unknown_label.value,
            image_format=image_format.value,
            viz=viz,
            workers=workers,
            force=force,
            fail_fast=fail_fast,
            max_pixels=max_pixels,
        )
        with progress_bar("converting", quiet=json_output) as progress:
            summary = convert(input_dir, output, options, progress)
        if json_output:
            print_json(summary.to_dict())
        else:
            _render(summary)
        for failure in summary.failures:
            print_error(failure)
        if summary.failures:
            raise typer.Exit(EXIT_DATA)
