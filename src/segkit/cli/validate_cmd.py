"""`segkit validate`: check a VOC dataset folder and list what is wrong with it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from segkit._text import plural
from segkit.cli._common import (
    EXIT_DATA,
    JSON_HELP,
    console,
    examples,
    existing_folder,
    print_json,
    progress_bar,
)
from segkit.defaults import DEFAULT_MAX_DISTANCE, HASH_BITS

if TYPE_CHECKING:
    from rich.table import Table

    from segkit.validate import Finding


def _table(findings: list[Finding]) -> Table:
    from rich.table import Table
    from rich.text import Text

    from segkit.validate import ERROR, WARNING

    styles = {ERROR: "bold red", WARNING: "yellow"}
    table = Table(show_lines=False, header_style="bold")
    table.add_column("severity", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("file", overflow="fold")
    table.add_column("detail", overflow="fold")
    for item in findings:
        table.add_row(
            Text(item.severity, style=styles.get(item.severity, "")),
            Text(item.check),
            Text(item.file or "-"),
            Text(item.detail),
        )
    return table


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""

    @app.command(
        "validate",
        epilog=examples(
            "segkit validate dataset/",
            "segkit validate dataset/ --json > findings.json",
        ),
    )
    def validate_command(
        dataset: Annotated[
            Path,
            typer.Argument(
                parser=existing_folder("dataset folder"),
                help="VOC-layout dataset folder (JPEGImages/, SegmentationClass/, ...).",
            ),
        ],
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        workers: Annotated[
            int | None,
            typer.Option(min=1, help="Worker processes (default: all usable cores)."),
        ] = None,
        near_duplicate_distance: Annotated[
            int,
            typer.Option(
                min=0,
                max=HASH_BITS,
                help="Largest perceptual-hash distance (bits of 64) reported as a near-duplicate.",
            ),
        ] = DEFAULT_MAX_DISTANCE,
    ) -> None:
        """Check a dataset for missing, mismatched, mis-encoded, duplicate and leaking files.

        Prints a findings table (or JSON); exits 1 if any finding is an error. Reads only.
        """
        from rich.text import Text

        from segkit.validate_stage import ValidateOptions, validate

        options = ValidateOptions(workers=workers, near_duplicate_distance=near_duplicate_distance)
        with progress_bar("Validating", quiet=json_output) as progress:
            summary = validate(dataset, options, progress)
        findings = list(summary.findings)
        if json_output:
            print_json(summary.to_dict())
        else:
            if findings:
                console.print(_table(findings))
            samples = plural(summary.samples, "sample")
            if findings:
                line = (
                    f"{plural(summary.errors, 'error')}, "
                    f"{plural(summary.warnings, 'warning')} in {samples}"
                )
            else:
                line = f"no problems found in {samples}"
            style = "red" if summary.errors else ("yellow" if summary.warnings else "green")
            console.print(Text(line, style=style))
        if not summary.ok:
            raise typer.Exit(EXIT_DATA)
