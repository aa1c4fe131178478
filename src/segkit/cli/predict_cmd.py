"""`segkit predict`: a model's masks, overlays and labelme pre-annotations for new images."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from segkit.cli._common import (
    EXIT_DATA,
    JSON_HELP,
    console,
    err_console,
    escape,
    examples,
    existing_file,
    folder,
    print_json,
    progress_bar,
    titled_table,
)
from segkit.defaults import DEFAULT_MAX_PIXELS


class Tta(str, Enum):
    """Test-time augmentation."""

    none = "none"
    flip = "flip"


class Rank(str, Enum):
    """How to rank images for the next labeling round."""

    none = "none"
    uncertainty = "uncertainty"


class Checkpoint(str, Enum):
    """Which checkpoint of a run folder."""

    best = "best"
    last = "last"


def _run_path(value: object) -> Path:
    """A run folder or a checkpoint file that exists."""
    path = folder(value)
    return path if path.is_dir() else existing_file(path)


def _render(summary: object) -> None:
    from segkit.predict.stage import PredictSummary

    assert isinstance(summary, PredictSummary)
    data = summary.to_dict()
    table = titled_table(
        title=escape(f"segkit predict → {summary.output}"),
        header_style="bold",
    )
    table.add_column("", justify="left")
    table.add_column("", justify="right")
    rate = data["megapixels_per_second"]
    table.add_row("images", f"{data['images']} ({data['skipped_up_to_date']} up to date)")
    table.add_row("seconds", f"{data['seconds']:.2f}")
    table.add_row("megapixels/s", "–" if rate is None else f"{rate:.3g}")
    table.add_row("device / precision", f"{summary.device} / {summary.precision}")
    total = sum(summary.class_pixels) or 1
    for name, count in zip(summary.classes, summary.class_pixels, strict=False):
        table.add_row(f"pixels: {escape(name)}", f"{count:,} ({100 * count / total:.1f}%)")
    console.print(table)
    if summary.ranking:
        console.print("most uncertain first:", soft_wrap=True)
        for row in summary.ranking[:5]:
            console.print(
                f"  {row['rank']}. {escape(row['id'])}  entropy {row['mean_entropy']:.4f}  "
                f"low-confidence {100 * row['low_confidence_share']:.1f}%",
                soft_wrap=True,
            )
    for path in summary.kept_annotations:
        err_console.print(
            f"[yellow]kept:[/] {escape(path)} (not written by segkit; --overwrite-annotations "
            "replaces it)",
            soft_wrap=True,
        )
    for message in summary.errors:
        err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's command to app."""

    @app.command(
        "predict",
        epilog=examples(
            "segkit predict runs/a new_images/ -o predictions/",
            "segkit predict runs/a unlabeled/ -o next/ --labelme --rank uncertainty",
            "segkit predict runs/a slide.tif -o out/ --tile 512 --overlap 64 --tta flip",
        ),
    )
    def predict_command(
        run: Annotated[
            Path,
            typer.Argument(
                parser=_run_path, help="Run folder (its best checkpoint) or a checkpoint file."
            ),
        ],
        inputs: Annotated[
            list[Path],
            typer.Argument(help="Image files or folders (searched recursively)."),
        ],
        output: Annotated[
            Path, typer.Option("-o", "--output", parser=folder, help="Output folder.")
        ],
        checkpoint: Annotated[
            Checkpoint, typer.Option(help="Checkpoint of a run folder.")
        ] = Checkpoint.best,
        labelme: Annotated[
            bool,
            typer.Option("--labelme", help="Also write labelme JSON (polygons) per image."),
        ] = False,
        rank: Annotated[
            Rank, typer.Option(help="Write ranking.csv: most uncertain images first.")
        ] = Rank.none,
        tile: Annotated[
            int | None,
            typer.Option(
                min=8, help="Tile size in pixels (default: whole image up to 1024 px, else 512)."
            ),
        ] = None,
        overlap: Annotated[int, typer.Option(min=0, help="Tile overlap in pixels.")] = 64,
        batch_size: Annotated[int, typer.Option(min=1, help="Tiles per forward pass.")] = 4,
        tta: Annotated[Tta, typer.Option(help="Test-time augmentation.")] = Tta.none,
        device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
        precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
        save_probs: Annotated[
            bool, typer.Option("--save-probs", help="Also save float16 probabilities (.npy).")
        ] = False,
        simplify: Annotated[
            float, typer.Option(min=0, help="Polygon simplification tolerance in pixels.")
        ] = 0.5,
        min_area: Annotated[
            int, typer.Option(min=0, help="Drop polygon regions smaller than this (pixels).")
        ] = 0,
        embed_image: Annotated[
            bool, typer.Option("--embed-image", help="Store the image in the JSON (imageData).")
        ] = False,
        overwrite_annotations: Annotated[
            bool,
            typer.Option(
                "--overwrite-annotations",
                help="Replace labelme JSON that segkit did not write (or a person edited).",
            ),
        ] = False,
        force: Annotated[
            bool, typer.Option("--force", help="Redo images whose outputs are up to date.")
        ] = False,
        max_pixels: Annotated[
            int,
            typer.Option(min=1, help="Refuse larger images (decompression-bomb guard)."),
        ] = DEFAULT_MAX_PIXELS,
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Predict masks for new images; optionally labelme JSON to correct, not redraw.

        Writes masks/ (palette PNG), overlays/ (JPEG), probs/ (--save-probs),
        labelme/ (--labelme: one polygon per region per class; holes come back as
        later shapes of what fills them), ranking.csv (--rank uncertainty) and
        predictions.json. Large images are tiled with Gaussian blending, so memory
        follows the tile size. Up-to-date images are skipped (--force redoes them).
        """
        from segkit.predict.stage import PredictOptions, predict

        options = PredictOptions(
            run=run,
            checkpoint=checkpoint.value,
            device=device,
            precision=precision,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
            tta=tta.value,
            save_probs=save_probs,
            labelme=labelme,
            embed_image=embed_image,
            simplify=simplify,
            min_area=min_area,
            rank=rank.value,
            force=force,
            overwrite_annotations=overwrite_annotations,
            max_pixels=max_pixels,
            command=tuple(sys.argv),
        )
        with progress_bar("predicting", quiet=json_output) as progress:
            summary = predict(inputs, output, options, progress)
        if json_output:
            print_json(summary.to_dict())
        else:
            _render(summary)
        if not summary.ok:
            raise typer.Exit(EXIT_DATA)
