"""`segkit train`: options → ``TrainOptions``, progress per epoch, a final table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segkit.cli._common import (
    JSON_HELP,
    console,
    err_console,
    escape,
    examples,
    existing_folder,
    folder,
    print_json,
)
from segkit.cli._interrupt import EXIT_INTERRUPTED
from segkit.errors import OptionError

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

EXAMPLES = examples(
    "segkit train DATASET -o runs/exp1",
    "segkit train DATASET -o runs/exp1 --model unet --loss ce+dice --epochs 50",
    "segkit train DATASET -o runs/exp1 --time 30",
    "segkit train DATASET -o runs/exp1 --resume --epochs 80",
    "torchrun --standalone --nproc_per_node 4 -m segkit train DATASET -o runs/exp1",
)


def _batch_size(text: str | None) -> int | None:
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise OptionError(
            f"--batch-size must be a positive integer or auto; got {text!r}"
        ) from None


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}f}"
    return "–" if value is None else str(value)


class _Renderer:
    """Turns ``TrainEvent``s into a rich progress bar per epoch and one line per epoch."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: Any = None

    def __call__(self, event: Any) -> None:
        if event.kind in ("info", "warning"):
            if event.kind == "warning":
                err_console.print(f"[yellow]warning:[/] {escape(event.message)}", soft_wrap=True)
            elif not self.quiet:
                err_console.print(escape(event.message), soft_wrap=True)
        elif self.quiet:
            return
        elif event.kind == "epoch_start":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.close()
            total = event.data["epochs"]
            label = f"epoch {event.data['epoch']}" + (f"/{total}" if total else "")
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                console=err_console.real, transient=True,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task(
                label, total=event.data["batches"], completed=event.data["first_batch"], info=""
            )
        elif event.kind == "step" and self.progress is not None:
            info = event.step
            stats = info.stats
            busy = stats.data_seconds + stats.compute_seconds
            rate = stats.images / busy if busy else 0.0
            self.progress.update(
                self.task,
                completed=info.batch,
                info=f"loss {info.loss:.4f}  {rate:.1f} img/s  data {stats.data_seconds:.1f}s"
                f" / compute {stats.compute_seconds:.1f}s",
            )
        elif event.kind == "epoch_end":
            self.close()
            row = event.data
            val = (
                f"  val loss {_fmt(row.get('val_loss'))}  mIoU {_fmt(row.get('mIoU'))}"
                if "mIoU" in row
                else ""
            )
            if "object_F1" in row:
                val += f"  object F1 {_fmt(row['object_F1'])}"
            err_console.print(
                f"epoch {row['epoch']}: train loss {_fmt(row['train_loss'])}{val}  "
                f"lr {row['lr']:.2e}  {_fmt(row.get('images_per_s'), 1)} img/s  "
                f"{row['wall_s']:.1f}s",
                soft_wrap=True,
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _table(summary: Any) -> Table:
    from rich.table import Table

    table = Table(title=escape(f"segkit train → {summary.run}"), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    best = (
        f"{_fmt(summary.best_score)} at epoch {summary.best_epoch}" if summary.best_epoch else "–"
    )
    for key, value in (
        ("stopped", summary.stopped),
        ("epochs", str(summary.epochs)),
        (f"best val {summary.monitor}", best),
        ("final val mIoU", _fmt(summary.final.get("mIoU"))),
        *(
            [("final val object F1", _fmt(summary.final["object_F1"]))]
            if "object_F1" in summary.final
            else []
        ),
        ("device / precision", f"{summary.device} / {summary.precision}"),
        ("time", f"{summary.seconds / 60:.1f} min"),
        ("best checkpoint", str(summary.best_checkpoint)),
        ("last checkpoint", str(summary.last_checkpoint)),
        ("next", summary.next_command),
    ):
        table.add_row(key, escape(value))
    return table


def register(app: typer.Typer) -> None:
    """Add `segkit train` to app."""

    @app.command("train", epilog=EXAMPLES)
    def train_command(
        dataset: Annotated[
            Path,
            typer.Argument(
                parser=existing_folder("dataset folder"),
                help="VOC dataset folder with train/val splits.",
            ),
        ],
        output: Annotated[
            Path, typer.Option("--output", "-o", parser=folder, help="Run folder to write.")
        ],
        resume: Annotated[
            bool, typer.Option(help="Continue the run in -o (options come from its config).")
        ] = False,
        force: Annotated[bool, typer.Option(help="Start over in a folder holding a run.")] = False,
        model: Annotated[str | None, typer.Option(help="Registry model (segkit models).")] = None,
        loss: Annotated[
            str | None, typer.Option(help="Loss spec, e.g. ce, ce+dice, focal.")
        ] = None,
        class_weights: Annotated[
            bool | None, typer.Option(help="Weight the loss with weights.json (segkit weights).")
        ] = None,
        border_weights: Annotated[
            bool | None,
            typer.Option(help="Use the U-Net border weight maps (segkit weights --border)."),
        ] = None,
        encoder_weights: Annotated[
            str | None,
            typer.Option(
                help="Local ImageNet weights for a ResNet encoder (unet-r18, unet-r34): "
                "a torchvision-layout .safetensors or .pth file."
            ),
        ] = None,
        epochs: Annotated[int | None, typer.Option(help="Epochs to train [default: 50].")] = None,
        time: Annotated[
            float | None,
            typer.Option("--time", help="Train for this many minutes instead of --epochs."),
        ] = None,
        batch_size: Annotated[
            str | None, typer.Option(help="Images per step, or auto (CUDA) [default: 8].")
        ] = None,
        crop: Annotated[
            int | None,
            typer.Option(
                help="Training crop side [default: smallest training image side, "
                "at most 256 (128 on a CPU)]."
            ),
        ] = None,
        optimizer: Annotated[str | None, typer.Option(help="adamw or sgd.")] = None,
        lr: Annotated[
            float | None, typer.Option(help="Peak learning rate [default: 1e-3].")
        ] = None,
        weight_decay: Annotated[float | None, typer.Option(help="Weight decay.")] = None,
        schedule: Annotated[str | None, typer.Option(help="cosine, poly or constant.")] = None,
        warmup: Annotated[float | None, typer.Option(help="Warm-up share of the run.")] = None,
        clip_grad: Annotated[float | None, typer.Option(help="Max gradient norm; 0 = off.")] = None,
        accumulate: Annotated[int | None, typer.Option(help="Batches per optimizer step.")] = None,
        precision: Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16.")] = None,
        channels_last: Annotated[str | None, typer.Option(help="auto, on or off.")] = None,
        compile: Annotated[bool | None, typer.Option(help="torch.compile the model.")] = None,
        device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
        augment: Annotated[
            bool | None, typer.Option(help="Flips, affine, elastic, colour.")
        ] = None,
        val_every: Annotated[int | None, typer.Option(help="Validate every N epochs.")] = None,
        monitor: Annotated[
            str | None,
            typer.Option(help="mIoU, aAcc, val_loss or object_F1 (needs instance masks)."),
        ] = None,
        patience: Annotated[
            int | None, typer.Option(help="Stop after N validations without improvement.")
        ] = None,
        seed: Annotated[
            int | None, typer.Option(help="Seed (CPU runs repeat bit for bit).")
        ] = None,
        workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
        cache: Annotated[
            bool | None, typer.Option(help="Keep decoded samples in memory when they fit.")
        ] = None,
        save_every: Annotated[
            int | None, typer.Option(help="Also save the resume state every N steps.")
        ] = None,
        json_output: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        quiet: Annotated[bool, typer.Option(help="Only warnings and the result.")] = False,
    ) -> None:
        """Train a segmentation model on a dataset from convert → split (→ weights).

        Exit 2 for a bad option (nothing written), 1 for a data problem or a NaN loss,
        130 after Ctrl-C (the state is saved; the message gives the --resume command).
        """
        from segkit.train.distributed import from_environment
        from segkit.train.stage import TrainingInterrupted, train

        values = {
            "model": model, "loss": loss, "class_weights": class_weights,
            "border_weights": border_weights, "encoder_weights": encoder_weights,
            "epochs": epochs, "time_minutes": time,
            "crop": crop, "optimizer": optimizer, "lr": lr, "weight_decay": weight_decay,
            "schedule": schedule, "warmup": warmup, "clip_grad": clip_grad,
            "accumulate": accumulate, "precision": precision, "channels_last": channels_last,
            "compile": compile, "device": device, "augment": augment, "val_every": val_every,
            "monitor": monitor, "patience": patience, "seed": seed, "workers": workers,
            "cache": cache, "save_every": save_every,
        }  # fmt: skip
        renderer = _Renderer(quiet or json_output)
        try:
            values["batch_size"] = _batch_size(batch_size)
            changes = {k: v for k, v in values.items() if v is not None}
            summary = train(
                dataset, output, resume=resume, force=force, on_event=renderer, **changes
            )
        except TrainingInterrupted as error:
            # Not a failure line: the run is saved and the message says how to go on.
            renderer.close()
            err_console.print(f"[yellow]{escape(str(error))}[/]", soft_wrap=True)
            if json_output:
                print_json({"ok": False, "exit_code": EXIT_INTERRUPTED, "errors": [str(error)]})
            raise SystemExit(EXIT_INTERRUPTED) from None
        finally:  # errors go to the shared CLI layer: one line, exit 2 (options) or 1
            renderer.close()
        if not from_environment().is_main:  # under torchrun only rank 0 reports
            return
        if json_output:
            print_json(summary.to_dict())
        else:
            console.print(_table(summary))
