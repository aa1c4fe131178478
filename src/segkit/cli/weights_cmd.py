"""`segkit weights`: class statistics, class-balancing weights and U-Net border weight maps."""

from __future__ import annotations

from enum import Enum
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
    print_json,
    progress_bar,
    titled_table,
)
from segkit.defaults import DEFAULT_BETA, DEFAULT_SIGMA, DEFAULT_W0

if TYPE_CHECKING:
    from rich.table import Table

    from segkit.weights_stage import WeightsSummary


class Scheme(str, Enum):
    """Class-weighting schemes (see ``segkit.weights``)."""

    median_frequency = "median-frequency"
    inverse_frequency = "inverse-frequency"
    enet = "enet"
    effective_number = "effective-number"
    pos_weight = "pos-weight"
    uniform = "uniform"


class BorderOn(str, Enum):
    """Where the border term is added."""

    background = "background"
    all = "all"


def _table(summary: WeightsSummary) -> Table:
    split = f"split {summary.split}" if summary.split else "all images"
    scheme = summary.scheme + (f", beta={summary.beta:g}" if summary.beta is not None else "")
    table = titled_table(
        title=escape(f"segkit weights → {summary.root} ({split}, {summary.num_images} images)"),
        caption=escape(f"scheme {scheme}; weights scaled to a pixel-weighted mean of 1"),
        header_style="bold",
    )
    for name in ("id", "class", "pixels", "images", "frequency", "weight"):
        table.add_column(name, justify="left" if name == "class" else "right", no_wrap=True)
    for row in summary.classes:
        pixels = f"{row.pixels:,}" if row.pixels else "[red]0[/]"
        table.add_row(
            str(row.id),
            escape(row.name),
            pixels,
            str(row.images),
            f"{row.frequency:.4%}",
            f"{row.weight:.4f}",
        )
    return table


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""

    @app.command(
        "weights",
        epilog=examples(
            "segkit weights dataset/",
            "segkit weights dataset/ --scheme effective-number --border --viz",
        ),
    )
    def weights_command(
        dataset: Annotated[
            Path,
            typer.Argument(
                parser=existing_folder("dataset folder"),
                help="VOC-layout dataset folder (SegmentationClass/, ImageSets/).",
            ),
        ],
        split: Annotated[
            str | None,
            typer.Option(
                help="Split to count (ImageSets/Segmentation/<split>.txt), or 'all'. "
                "Default: train, or every image when there are no split files."
            ),
        ] = None,
        scheme: Annotated[
            Scheme,
            typer.Option(
                metavar="SCHEME",
                help="Class-weighting scheme: " + ", ".join(item.value for item in Scheme) + ".",
                case_sensitive=False,
            ),
        ] = Scheme.median_frequency,
        beta: Annotated[
            float, typer.Option(help="beta of the effective-number scheme, in [0, 1).")
        ] = DEFAULT_BETA,
        border: Annotated[
            bool,
            typer.Option(
                "--border",
                help="Write per-pixel U-Net weight maps SegmentationWeights/<id>.npy (float32).",
            ),
        ] = False,
        w0: Annotated[float, typer.Option(help="Border term height (with --border).")] = DEFAULT_W0,
        sigma: Annotated[
            float, typer.Option(help="Border term width in pixels (with --border).")
        ] = DEFAULT_SIGMA,
        border_on: Annotated[
            BorderOn,
            typer.Option(help="Add the border term on background pixels or on all pixels."),
        ] = BorderOn.background,
        viz: Annotated[
            bool,
            typer.Option(
                "--viz", help="Write heat maps to SegmentationWeightsVisualization/<id>.png."
            ),
        ] = False,
        workers: Annotated[
            int | None, typer.Option(help="Worker processes (default: all usable cores).")
        ] = None,
        force: Annotated[
            bool,
            typer.Option(
                "--force", help="Recompute everything; write into folders segkit did not create."
            ),
        ] = False,
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Class frequencies and class weights of a split, and optional border weight maps.

        Writes weights.json in the dataset (class_weights: one weight per class id, in order)
        and records it in segkit.json when the dataset has one. With --border, also one
        weight map per image: w = w_class + w0 * exp(-(d1 + d2)^2 / (2 sigma^2)), d1/d2
        the distances to the nearest and second-nearest object (SegmentationObject, or
        connected components of each class), 0 on ignore pixels.

        Re-running skips masks and maps whose inputs and options did not change.
        """
        from segkit.weights_stage import WeightsOptions, compute_weights

        options = WeightsOptions(
            split=split,
            scheme=scheme.value,
            beta=beta,
            border=border,
            w0=w0,
            sigma=sigma,
            border_on=border_on.value,
            viz=viz,
            force=force,
            workers=workers,
        )
        with progress_bar("Weights", quiet=json_output) as progress:
            summary = compute_weights(dataset, options, progress=progress)
        if json_output:
            print_json(summary.to_dict())
            return
        console.print(_table(summary))
        if summary.pos_weight is not None:
            console.print(f"binary pos_weight (negatives/positives): {summary.pos_weight:.4f}")
        for line in summary.notes:
            err_console.print(f"[yellow]note:[/] {escape(line)}", soft_wrap=True)
        written = [f"wrote {summary.weights_file}"]
        if summary.maps_dir is not None:
            written.append(
                f"{summary.maps_written} weight map(s) in {summary.maps_dir}/ "
                f"({summary.maps_unchanged} up to date)"
            )
            objects = []
            if summary.objects_from_instances:
                objects.append(f"{summary.objects_from_instances} from SegmentationObject")
            if summary.objects_from_components:
                objects.append(f"{summary.objects_from_components} from class components")
            written.append("objects: " + ", ".join(objects))
        if summary.maps_removed:
            written.append(f"removed {summary.maps_removed} stale map(s)")
        if summary.viz_written:
            written.append(f"{summary.viz_written} heat map(s)")
        if summary.manifest_updated:
            written.append("recorded in segkit.json")
        console.print(escape("; ".join(written)), soft_wrap=True)
