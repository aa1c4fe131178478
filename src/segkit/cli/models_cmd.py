"""`segkit models` (the registry table, UNet++ pruning costs) and `segkit export` (ONNX)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from segkit.cli._common import (
    EXIT_DATA,
    JSON_HELP,
    console,
    examples,
    existing_file,
    print_error,
    print_json,
    titled_table,
)
from segkit.errors import OptionError

if TYPE_CHECKING:
    from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
    app.command(
        "models",
        epilog=examples(
            "segkit models", "segkit models --pruning --model unetpp-small --no-latency"
        ),
    )(models_command)
    app.command(
        "export",
        epilog=examples(
            "segkit export runs/a/checkpoints/best.safetensors --onnx",
            "segkit export best.safetensors --onnx --prune-level 2 -o model.onnx",
        ),
    )(export_command)


def models_command(
    pruning: Annotated[
        bool,
        typer.Option(
            "--pruning",
            help="Per UNet++ pruning level: parameters, GFLOPs and CPU latency (batch 1).",
        ),
    ] = False,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Only this registry model (repeatable)."),
    ] = None,
    size: Annotated[
        int, typer.Option(min=16, help="Square input size for FLOPs and latency.")
    ] = 256,
    in_channels: Annotated[int, typer.Option(min=1, help="Input channels.")] = 3,
    num_classes: Annotated[int, typer.Option(min=1, help="Output classes.")] = 2,
    repeats: Annotated[
        int, typer.Option(min=1, help="Timed forward passes per level (best reported).")
    ] = 3,
    no_latency: Annotated[
        bool, typer.Option("--no-latency", help="With --pruning: skip the timing.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List the bundled models with parameters and FLOPs (or UNet++ pruning costs)."""
    from segkit.models import describe_model, get_spec, list_models, pruning_table

    names = list(model) if model else list_models()
    for name in names:
        get_spec(name)
    if pruning:
        if not model:
            names = [n for n in names if n.startswith("unetpp")]
        tables = {
            name: pruning_table(
                name,
                in_channels=in_channels,
                num_classes=num_classes,
                size=size,
                repeats=repeats,
                measure=not no_latency,
            )
            for name in names
        }
        if json_output:
            print_json(
                {name: [dataclasses.asdict(row) for row in rows] for name, rows in tables.items()}
            )
            return
        for name, rows in tables.items():
            console.print(_pruning_table(name, rows, size))
        return
    infos = [
        describe_model(name, in_channels=in_channels, num_classes=num_classes, size=size)
        for name in names
    ]
    if json_output:
        print_json([dataclasses.asdict(info) for info in infos])
        return
    table = titled_table(
        title=f"segkit models ({in_channels}→{num_classes} channels, {size}×{size})"
    )
    table.add_column("name", style="bold")
    table.add_column("params", justify="right")
    table.add_column("GFLOPs", justify="right")
    table.add_column("in→out", justify="right")
    table.add_column("description")
    for info in infos:
        table.add_row(
            info.name,
            _millions(info.parameters),
            f"{info.gflops:.1f}",
            f"{info.input_size}→{info.output_size}",
            info.description,
        )
    console.print(table)
    console.print(
        "GFLOPs: one image, multiply-add = 2, convolutions only. "
        "Valid-padding models run at the smallest valid size ≥ the requested one."
    )


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count:,}"


def _pruning_table(name: str, rows: list, size: int) -> Table:
    table = titled_table(title=f"{name} pruning, {size}×{size}, batch 1")
    table.add_column("level", justify="right")
    table.add_column("params", justify="right")
    table.add_column("GFLOPs", justify="right")
    table.add_column("latency ms", justify="right")
    for row in rows:
        latency = "-" if row.latency_ms is None else f"{row.latency_ms:.1f}"
        table.add_row(f"L{row.level}", _millions(row.parameters), f"{row.gflops:.2f}", latency)
    return table


def export_command(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            parser=existing_file,
            help="Checkpoint: NAME.safetensors (its NAME.json sidecar beside it).",
        ),
    ],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX.")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output file (default: NAME.onnx beside it)."),
    ] = None,
    size: Annotated[
        int, typer.Option(min=16, help="Square example input size used for tracing.")
    ] = 256,
    opset: Annotated[int, typer.Option(min=11, help="ONNX opset version.")] = 17,
    prune_level: Annotated[
        int | None,
        typer.Option(min=1, help="UNet++ only: export the network pruned to this level."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Compare ONNX and PyTorch outputs with onnxruntime (if installed).",
        ),
    ] = True,
    json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Export a trained checkpoint to a deployable format (ONNX, dynamic batch and size)."""
    from segkit.checkpoint import checkpoint_paths, load_checkpoint
    from segkit.models.export import check_onnx, export_onnx, onnxruntime_available
    from segkit.models.profile import example_input_size

    if not onnx:
        raise OptionError("choose an export format: --onnx")
    loaded = load_checkpoint(checkpoint)
    model, meta = loaded.model, loaded.meta
    if prune_level is not None:
        if not hasattr(model, "prune"):
            raise OptionError(f"--prune-level: model {meta.model.name!r} cannot be pruned")
        try:
            model.prune(prune_level)
        except ValueError as error:
            raise OptionError(f"--prune-level: {error}") from None
    tensors_path, sidecar_path = checkpoint_paths(checkpoint)
    target = output if output is not None else tensors_path.with_suffix(".onnx")
    if any(_same_file(target, own) for own in (tensors_path, sidecar_path)):
        raise OptionError(f"-o {target}: is the checkpoint itself; choose another file")
    input_size = example_input_size(model, size)
    metadata = {**meta.to_dict(), "prune_level": prune_level}
    export_onnx(
        model,
        target,
        input_size=input_size,
        in_channels=meta.model.in_channels,
        opset=opset,
        metadata=metadata,
    )
    checks = []
    if check and onnxruntime_available():
        shapes = [(1, meta.model.in_channels, input_size, input_size)]
        # A second, odd-sized batch proves the dynamic axes (valid nets need valid sizes).
        other = (
            input_size + 2**model.depth
            if getattr(model, "padding", "same") == "valid"
            else size - 3
        )
        shapes.append((2, meta.model.in_channels, other, other + 2 * 2**model.depth))
        checks = check_onnx(target, model, shapes)
    result = {
        "onnx": str(target),
        "architecture": meta.model.name,
        "input_size": input_size,
        "prune_level": prune_level,
        "checked": [dataclasses.asdict(c) for c in checks],
    }
    failed = [c for c in checks if not c.ok]
    if json_output:
        print_json(result)
    else:
        console.print(f"wrote [bold]{target}[/] ({meta.model.name}, opset {opset})")
        for c in checks:
            verdict = "[green]ok[/]" if c.ok else "[red]MISMATCH[/]"
            console.print(
                f"onnxruntime {tuple(c.shape)}: max |Δ| = {c.max_abs_diff:.2e} "
                f"(max |logit| {c.max_abs_value:.2f}) {verdict}"
            )
        if check and not checks:
            console.print(
                "onnxruntime not installed: output not checked (pip install 'segkit[onnx]')"
            )
    if failed:
        # Not raised: under --json the one document on stdout is already printed.
        print_error(f"{target}: ONNX output differs from PyTorch beyond 1e-4; see above")
        raise typer.Exit(EXIT_DATA)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links or case-insensitive names)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and os.path.samefile(a, b))
    except OSError:
        return False
