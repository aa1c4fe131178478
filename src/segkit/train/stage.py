"""``train(dataset, output, options)``: a VOC dataset in, a complete run folder out.

Everything that can be wrong with the options or the data is checked before the
output folder is touched; then the loop runs, saving ``checkpoints/last.*``, the
metrics files and the resume state after every epoch (and every ``save_every``
optimizer steps), ``checkpoints/best.*`` whenever the monitored score improves.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Subset

from segkit import __version__
from segkit._csv import csv_text
from segkit._io import atomic_write_json, atomic_write_text, sha256_file
from segkit._text import short_list
from segkit.checkpoint import checkpoint_paths, save_checkpoint
from segkit.dataset import Dataset, open_dataset
from segkit.devices import Runtime, resolve_runtime
from segkit.errors import DatasetError, OptionError, SegkitError, SegkitNote
from segkit.losses import build_loss
from segkit.manifest import manifest_path
from segkit.metrics import ObjectCounts
from segkit.models import build_model
from segkit.models.unet import input_size_for_output, valid_output_size
from segkit.ownership import (
    check_apart,
    is_bookkeeping,
    note_foreign,
    output_folder,
    stays_inside,
)
from segkit.parallel import pool_context
from segkit.train import distributed
from segkit.train.augment import AugmentSettings
from segkit.train.budget import TimeBudget
from segkit.train.data import (
    RARE_CLASS_SHARE,
    EpochSampler,
    EvalSet,
    Scan,
    SplitFiles,
    TrainSet,
    class_shares,
    scan_samples,
    seed_worker,
    split_files,
)
from segkit.train.loop import EpochStats, StepInfo, evaluate, lr_factor, train_one_epoch
from segkit.train.options import TrainOptions, resume_conflicts
from segkit.train.plots import save_confusion, save_curves
from segkit.train.state import STATE_DIR, has_state, load_state, save_state
from segkit.voc import voc_colormap
from segkit.weights_stage import WeightsFile, load_weights

RUN_FORMAT = "segkit-run"
SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
CONFUSION_PNG = "confusion_matrix.png"
CONFUSION_JSON = "confusion.json"
CHECKPOINT_DIR = "checkpoints"
REPORT_DIR = "report"
#: The files a run writes (glob patterns relative to the run folder), recorded in its
#: config.json as ``"files"``; ``--force`` deletes only the files a run recorded.
RUN_FILES = (
    CONFIG_FILE,
    METRICS_JSONL,
    METRICS_CSV,
    CURVES_PNG,
    CONFUSION_PNG,
    CONFUSION_JSON,
    *(f"{CHECKPOINT_DIR}/{n}.{s}" for n in ("best", "last") for s in ("safetensors", "json")),
    f"{STATE_DIR}/resume.json",
    f"{STATE_DIR}/resume-*.safetensors",
)
DEFAULT_CROP = 256
#: On a CPU a 128 px crop trains ~5× more images per second than 256 (cache-friendly).
DEFAULT_CPU_CROP = 128
#: The clock ``--time`` and the durations in the run's record are measured on (tests
#: replace it with a fake one).
_clock = time.perf_counter


class TrainingInterrupted(Exception):
    """Ctrl-C: the state was saved; ``str()`` says how to resume."""


@dataclass(frozen=True)
class TrainEvent:
    """Progress for a renderer: ``info``/``warning`` lines, ``epoch_start``, ``step``, ``epoch_end``."""

    kind: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    step: StepInfo | None = None


@dataclass(frozen=True)
class TrainSummary:
    """What a finished run reports (the CLI's final table, ``--json``)."""

    run: Path
    epochs: int
    stopped: str
    monitor: str
    best_epoch: int | None
    best_score: float | None
    best_checkpoint: Path
    last_checkpoint: Path
    final: dict[str, Any]
    device: str
    precision: str
    seconds: float
    next_command: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run": str(self.run),
            "epochs": self.epochs,
            "stopped": self.stopped,
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "best_checkpoint": str(self.best_checkpoint),
            "last_checkpoint": str(self.last_checkpoint),
            "final": self.final,
            "device": self.device,
            "precision": self.precision,
            "seconds": self.seconds,
            "next_command": self.next_command,
        }


# -- planning: every check before anything is written ------------------------------------


@dataclass
class _Plan:
    dataset: Dataset
    output: Path
    options: TrainOptions
    job: distributed.Dist
    runtime: Runtime
    classes: tuple[str, ...]
    train_files: list[SplitFiles]
    val_files: list[SplitFiles]
    scan: Scan
    crop: int
    batch_size: int
    workers: int
    class_weights: tuple[float, ...] | None
    resume: bool
    config: dict[str, Any]
    notes: list[tuple[str, str]]
    input_crop: int = 0  # the input tile: larger than crop for valid padding
    started: float = 0.0  # _clock() when train() was called: --time counts from there


def _read_config(output: Path) -> dict[str, Any] | None:
    path = output / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RUN_FORMAT else None


def _resolve_options(
    output: Path, options: TrainOptions | None, changes: dict[str, Any], resume: bool, force: bool
) -> tuple[TrainOptions, dict[str, Any] | None]:
    """The run's options and the saved config (on resume); refuses folder conflicts."""
    saved = _read_config(output)
    if resume:
        if saved is None or not has_state(output):
            raise OptionError(
                f"{output}: no run to resume here (no config.json and resume state); "
                "start it without --resume"
            )
        base = TrainOptions.from_dict(saved["options"])
        requested = dict(changes) if options is None else options.to_dict()
        conflicts = resume_conflicts(base, requested)
        if conflicts:
            raise OptionError(
                f"{output}: --resume cannot change {'; '.join(conflicts)}; "
                "start a new run (-o elsewhere) or drop these options"
            )
        return base.replace(**requested), saved
    if output.exists() and not output.is_dir():
        raise OptionError(f"{output}: exists and is not a folder")
    if output.is_dir() and any(not is_bookkeeping(p.name) for p in output.iterdir()):
        in_the_way = sorted(set(_matching(output, RUN_FILES)) - set(_run_files(output, saved)))
        if force and in_the_way:
            raise OptionError(
                f"{output}: {short_list(in_the_way)} not written by a segkit run; "
                "move them away or choose a new folder"
            )
        if saved is not None and not force:
            raise OptionError(
                f"{output}: holds a training run already; add --resume to continue it "
                "or --force to start over"
            )
        if saved is None and not force:
            raise OptionError(
                f"{output}: folder is not empty and holds no segkit run; choose a new folder "
                "or add --force to write into it"
            )
    return (options if options is not None else TrainOptions(**changes)), None


def _matching(output: Path, patterns: Iterable[str]) -> list[str]:
    """The files under ``output`` that match ``patterns`` (relative POSIX paths)."""
    found = {p for pattern in patterns for p in output.glob(pattern) if p.is_file()}
    return sorted(p.relative_to(output).as_posix() for p in found)


def _run_files(output: Path, saved: dict[str, Any] | None) -> list[str]:
    """The files the run in ``output`` recorded as its own (none when it holds no run);
    runs from before the record owned exactly ``RUN_FILES``."""
    if saved is None:
        return []
    recorded = saved.get("files")
    # config.json can be edited: a pattern that leaves the folder matches nothing.
    patterns = (
        [p for p in recorded if isinstance(p, str) and stays_inside(output, p)]
        if isinstance(recorded, list)
        else None
    )
    return _matching(output, RUN_FILES if patterns is None else patterns)


def _foreign(output: Path, owned: Iterable[str]) -> list[str]:
    """Entries of the run folder (and its checkpoints/ and state/) that segkit did not write."""
    owned = set(owned)
    names = []
    for folder in (output, output / CHECKPOINT_DIR, output / STATE_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            name = path.relative_to(output).as_posix()
            if is_bookkeeping(path.name) or name in owned or name in (CHECKPOINT_DIR, STATE_DIR):
                continue
            if name != REPORT_DIR:  # noted on its own (it describes the old checkpoints)
                names.append(name + ("/" if path.is_dir() else ""))
    return names


def _manifest_hash(dataset: Dataset) -> str | None:
    path = manifest_path(dataset.root)
    return sha256_file(path) if path.is_file() else None


def _samples_hash(dataset: Dataset) -> str | None:
    """Hash of the manifest's classes and samples: what identifies the data (a later
    ``segkit weights`` or ``split`` run rewrites other sections and must not block a resume)."""
    if dataset.manifest is None:
        return None
    import hashlib

    part = {key: dataset.manifest.get(key) for key in ("classes", "samples")}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def _check_same_data(saved: dict[str, Any], dataset: Dataset, classes: tuple[str, ...]) -> None:
    previous = saved.get("dataset", {})
    differences = []
    if list(previous.get("classes", [])) != list(classes):
        differences.append(f"classes {previous.get('classes')} → {list(classes)}")
    if previous.get("samples_sha256") != _samples_hash(dataset):
        differences.append("the samples listed in segkit.json changed")
    if previous.get("train_ids_sha256") != _ids_hash(dataset, "train"):
        differences.append("train split changed")
    if differences:
        raise OptionError(
            f"{dataset.root}: not the dataset this run was trained on: {'; '.join(differences)}"
        )


def _ids_hash(dataset: Dataset, split: str) -> str:
    import hashlib

    return hashlib.sha256("\n".join(dataset.read_split(split)).encode()).hexdigest()


def loader_options(workers: int, *, pin_memory: bool) -> dict[str, Any]:
    """``DataLoader`` options shared by the train and validation loaders.

    Loader workers start as segkit's own pools do (``parallel.pool_context``: fork on
    Linux). Under forkserver, Python 3.14's default there, a loader worker outlived a
    SIGKILLed training process: torch's watchdog watches its direct parent, the fork
    server, which stays alive as long as the worker does.
    """
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": pin_memory,
        "worker_init_fn": seed_worker,
        "persistent_workers": workers > 0,
    }
    if workers > 0:  # torch refuses a context without worker processes
        options["multiprocessing_context"] = pool_context()
    return options


def _default_workers(job: distributed.Dist) -> int:
    cores = os.cpu_count() or 1
    return max(0, min(4, cores // job.world - 1))


def _plan(
    dataset_root: Path,
    output: Path,
    options: TrainOptions | None,
    changes: dict[str, Any],
    resume: bool,
    force: bool,
) -> _Plan:
    job = distributed.from_environment()
    options, saved = _resolve_options(output, options, changes, resume, force)
    runtime = resolve_runtime(
        distributed.device_name(options.device, job), options.precision, options.channels_last
    )
    if options.batch_size == 0 and runtime.device.type != "cuda":
        raise OptionError("--batch-size auto needs a CUDA GPU; give a number on this device")
    build_loss(options.loss)  # a bad spec fails here, before any data is read
    dataset = open_dataset(dataset_root)
    classes = dataset.classes
    if len(classes) < 2:
        raise DatasetError(
            f"{dataset.root}: needs a class list with background and at least one class "
            "(segkit.json, class_names.txt or labels.txt); run `segkit convert` first"
        )
    probe_model = build_model(options.model, 3, len(classes))  # unknown model → OptionError
    if saved is not None:
        _check_same_data(saved, dataset, classes)
    class_weights = None
    if options.class_weights:
        weights = load_weights(dataset.root)
        if tuple(weights.classes) != classes:
            raise DatasetError(
                f"{weights.path}: classes {list(weights.classes)} differ from the dataset's "
                f"{list(classes)}; run `segkit weights {dataset.root} --force`"
            )
        if weights.split != "train":
            counted = "every image" if weights.split is None else f"the {weights.split!r} split"
            raise DatasetError(
                f"{weights.path}: class weights were counted on {counted}, not the train split "
                f"(val/test pixels would leak into the loss); re-run `segkit weights "
                f"{dataset.root} --force` (it counts the train split)"
            )
        _check_weights_split(weights, dataset)
        class_weights = weights.class_weights
    train_files = split_files(dataset, "train", weight_maps=options.border_weights)
    val_files = split_files(dataset, "val", instances=True)
    if options.monitor == "object_F1" and not any(f.object_mask for f in val_files):
        raise OptionError(
            f"--monitor object_F1 needs instance masks of the val images "
            f"({dataset.root / 'SegmentationObject'}); none found, monitor mIoU instead"
        )
    per_rank = len(train_files) // job.world
    batch_size = options.batch_size
    explicit = "batch_size" in changes or batch_size != TrainOptions().batch_size
    notes: list[tuple[str, str]] = []
    if saved is not None:  # the batch the run started with (a clamped default too)
        batch_size = int(saved["resolved"]["batch_size"])
    elif not explicit and 0 < per_rank < batch_size:
        batch_size = per_rank
        notes.append(("warning", f"--batch-size {batch_size} (the default {options.batch_size} "
                      f"is larger than the training split's {per_rank} images per process)"))  # fmt: skip
    if batch_size > per_rank:
        raise OptionError(
            f"--batch-size {batch_size} is larger than the training split "
            f"({len(train_files)} images" + (f", {per_rank} per process)" if job.world > 1 else ")")
        )
    scan = scan_samples(train_files, val_files, len(classes), cache=options.cache)
    default_crop = DEFAULT_CROP if runtime.device.type != "cpu" else DEFAULT_CPU_CROP
    crop = options.crop if options.crop is not None else min(default_crop, scan.min_side)
    if crop > scan.min_side:
        raise OptionError(
            f"--crop {crop} is larger than the smallest training image ({scan.min_side} px "
            "on its short side); use --crop "
            f"{scan.min_side} or less"
        )
    crop, input_crop = _tiles(probe_model, crop)
    if input_crop != crop:
        notes.append(("info", f"--model {options.model}: valid padding, so {input_crop} px "
                      f"input tiles (image borders mirrored) train {crop} px output tiles"))  # fmt: skip
    notes += _data_notes(scan, classes)
    encoder = None
    if options.encoder_weights is not None and saved is None:
        # Loads and checks the file now (one line if it does not fit), records its hash.
        probe = build_model(
            options.model, scan.channels, len(classes), encoder_weights=options.encoder_weights
        )
        encoder = probe.segkit_encoder_weights.to_dict()
        notes.append(("info", f"encoder weights {options.encoder_weights}: "
                              f"{encoder['loaded']} tensors loaded ({encoder['first_conv']})"))  # fmt: skip
    workers = options.workers if options.workers is not None else _default_workers(job)
    if batch_size == 0:
        batch_size = min(per_rank, 8)  # replaced by the probe on CUDA (see _probe_batch)
    config = {
        "format": RUN_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "files": list(RUN_FILES),
        "options": options.to_dict(),
        "resolved": {
            "crop": crop,
            "input_crop": input_crop,
            "batch_size": batch_size,
            "workers": workers,
            "device": str(runtime.device),
            "precision": runtime.precision,
            "channels_last": runtime.channels_last,
            "world_size": job.world,
            "in_channels": scan.channels,
        },
        "dataset": {
            "root": str(dataset.root.resolve()),  # segkit report runs from anywhere
            "classes": list(classes),
            "manifest_sha256": _manifest_hash(dataset),
            "samples_sha256": _samples_hash(dataset),
            "train_ids_sha256": _ids_hash(dataset, "train"),
            "train_images": len(train_files),
            "val_images": len(val_files),
            "class_weights": None if class_weights is None else list(class_weights),
        },
        "normalization": scan.normalization.to_dict(),
        "encoder_weights": encoder if saved is None else saved.get("encoder_weights"),
        "determinism": {
            "seed": options.seed,
            "cpu_bit_exact": True,
            "cudnn_benchmark": runtime.device.type == "cuda",
            "note": "CPU runs with the same seed, options and thread count repeat bit for bit; "
            "CUDA runs use cuDNN autotuning and atomics and are not bit-exact",
        },
        "versions": {
            "segkit": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    return _Plan(
        dataset, output, options, job, runtime, classes, train_files, val_files, scan, crop,
        batch_size, workers, class_weights, resume, config, notes, input_crop,
    )  # fmt: skip


def _tiles(model: nn.Module, crop: int) -> tuple[int, int]:
    """``(output, input)`` sides of a training tile for a ``crop`` px request.

    Size-preserving models take and return ``crop``. A valid-padding U-Net returns
    the largest output it can make within ``crop`` (sizes step by ``2**depth``) from
    a larger input tile, the U-Net paper's overlap-tile: the input adds the context
    the valid convolutions eat, mirrored beyond the image borders.
    """
    if getattr(model, "padding", "same") != "valid":
        return crop, crop
    depth = int(model.depth)
    size = input_size_for_output(crop, depth)
    if valid_output_size(size, depth) > crop:
        size = max(size - 2**depth, input_size_for_output(1, depth))
    return valid_output_size(size, depth), size


def _data_notes(scan: Scan, classes: tuple[str, ...]) -> list[tuple[str, str]]:
    notes = []
    if scan.cache is not None:
        notes.append(("info", f"cached {len(scan.cache)} decoded samples in memory "
                              f"({scan.cached_bytes / 2**20:.1f} MiB)"))  # fmt: skip
    else:
        notes.append(("info", "samples are decoded from disk every epoch (cache off or too big)"))
    shares = class_shares(scan.histogram, len(classes))
    notes.append(("info", "class pixel shares (train): "
                  + ", ".join(f"{n} {s:.2%}" for n, s in zip(classes, shares, strict=True))))  # fmt: skip
    for name, share in zip(classes, shares, strict=True):
        if share < RARE_CLASS_SHARE:
            notes.append(("warning", f"class {name!r} covers only {share:.3%} of the labelled "
                          "training pixels; expect a poor IoU (consider --class-weights)"))  # fmt: skip
    return notes


# -- the run ------------------------------------------------------------------------------


def _palette(dataset: Dataset, classes: tuple[str, ...]) -> list[list[int]]:
    colors = (dataset.manifest or {}).get("colors") or {}
    fallback = voc_colormap(len(classes))
    return [list(colors.get(name, fallback[i].tolist())) for i, name in enumerate(classes)]


def _scores(matrix: Any, classes: tuple[str, ...]) -> dict[str, float | None]:
    """mIoU, aAcc and per-class IoU from :mod:`segkit.metrics` (NaN → None for JSON)."""
    scores = matrix.scores()
    row: dict[str, float | None] = {"mIoU": _finite(scores.miou), "aAcc": _finite(scores.aacc)}
    for name, value in zip(classes, scores.iou, strict=True):
        row[f"IoU/{name}"] = _finite(value)
    return row


def _object_scores(objects: ObjectCounts, classes: tuple[str, ...]) -> dict[str, Any]:
    """Object F1, precision and recall at IoU 0.5 (pooled over the classes), merges,
    splits and per-class object F1, as in ``segkit report`` (:mod:`segkit.metrics`)."""
    scores = objects.scores()
    pooled = scores.pooled
    row: dict[str, Any] = {
        "object_F1": _finite(pooled["f1"]),
        "object_precision": _finite(pooled["precision"]),
        "object_recall": _finite(pooled["recall"]),
        "object_merges": pooled["merges"],
        "object_splits": pooled["splits"],
    }
    for cls in range(1, len(classes)):
        row[f"F1/{classes[cls]}"] = _finite(scores.f1[cls])
    return row


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return csv_text(columns, rows)


def _check_weights_split(weights: WeightsFile, dataset: Dataset) -> None:
    """Refuse class weights counted on a train split that has changed since."""
    if weights.images is None:
        return
    train = set(dataset.read_split("train"))
    added, removed = len(train - weights.images), len(weights.images - train)
    if added or removed:
        raise DatasetError(
            f"{weights.path}: class weights were counted on a train split that has changed "
            f"since ({added} image(s) added, {removed} removed); re-run "
            f"`segkit weights {dataset.root}`"
        )


@contextmanager
def _sigint_flag(enabled: bool) -> Iterator[threading.Event]:
    """First Ctrl-C sets the flag (the loop saves and stops); a second one interrupts."""
    flag = threading.Event()
    main_thread = threading.current_thread() is threading.main_thread()
    # An ignored SIGINT (a background job) stays ignored.
    if not enabled or not main_thread or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _Run:
    """The mutable part of a run: model, optimizer, progress, files."""

    def __init__(self, plan: _Plan, emit: Callable[[TrainEvent], None]) -> None:
        self.plan = plan
        self.emit = emit
        options, runtime = plan.options, plan.runtime
        torch.manual_seed(options.seed)
        # A resumed run takes every weight from its state, even if the file has moved.
        encoder = None if plan.resume else options.encoder_weights
        model = build_model(
            options.model, plan.scan.channels, len(plan.classes), encoder_weights=encoder
        )
        self.model_config = model.segkit_config
        self.raw_model = runtime.prepare_model(model)
        model = self.raw_model
        if plan.job.enabled:
            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if options.compile:
            model = torch.compile(model)
        self.model = model
        params = self.raw_model.parameters()
        if options.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=options.lr, momentum=options.momentum,
                weight_decay=options.weight_decay, nesterov=options.momentum > 0,
            )  # fmt: skip
        else:
            self.optimizer = torch.optim.AdamW(
                params, lr=options.lr, weight_decay=options.weight_decay
            )
        self.scaler = torch.amp.GradScaler("cuda") if runtime.needs_grad_scaler else None
        self.loss_fn = build_loss(options.loss, class_weights=plan.class_weights).to(runtime.device)
        self.train_set = TrainSet(
            plan.train_files,
            plan.scan,
            AugmentSettings(
                crop=plan.input_crop, enabled=options.augment, rotate=options.rotate,
                scale=options.scale, elastic=options.elastic,
                brightness=options.brightness, contrast=options.contrast,
            ),
            output_crop=plan.crop,
        )  # fmt: skip
        self.batches_per_epoch = len(plan.train_files) // plan.job.world // plan.batch_size
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / options.accumulate)
        self.progress: dict[str, Any] = {
            "epoch": 0,  # epochs completed
            "batch": 0,  # batches done in the current epoch
            "global_step": 0,
            "elapsed": 0.0,
            "stats": EpochStats().to_dict(),
            "history": [],
            "best_score": None,
            "best_epoch": None,
            "since_best": 0,
            "last_val_seconds": 0.0,
            "timings": {},
        }
        self.budget = TimeBudget(
            None if options.time_minutes is None else options.time_minutes * 60.0,
            clock=_clock,
            started=plan.started,
            val_pixels=plan.scan.val_pixels,
        )
        self.warned_data = False
        self.curves_current = False
        self.with_objects = any(f.object_mask is not None for f in plan.val_files)

    # -- schedule -------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.budget.elapsed()

    def resume_from(self, progress: dict[str, Any]) -> None:
        self.progress = {"timings": {}, **progress}
        self.budget.spent_before = float(progress.get("elapsed", 0.0))
        self.budget.restore(self.progress["timings"])

    def total_steps(self) -> int:
        return self.plan.options.epochs * self.steps_per_epoch

    def fraction(self, step: int) -> float:
        if self.budget.seconds is not None:
            return self.budget.fraction()
        return step / max(self.total_steps(), 1)

    def set_lr(self, step: int) -> float:
        options = self.plan.options
        lr = options.lr * lr_factor(
            self.fraction(step), schedule=options.schedule, warmup=options.warmup
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def out_of_time(self, extra: float = 0.0) -> bool:
        return self.budget.out_of_time(extra=extra)

    # -- files ----------------------------------------------------------------------
    @property
    def main(self) -> bool:
        return self.plan.job.is_main

    def path(self, *parts: str) -> Path:
        return self.plan.output.joinpath(*parts)

    def save_state(self) -> None:
        if self.main:
            self.progress["elapsed"] = self.elapsed()
            self.progress["timings"] = self.budget.to_dict()
            save_state(
                self.plan.output, model=self.raw_model, optimizer=self.optimizer,
                scaler=self.scaler, progress=self.progress,
            )  # fmt: skip

    def save_checkpoint(self, name: str, epoch: int, row: dict[str, Any]) -> None:
        plan = self.plan
        save_checkpoint(
            self.path(CHECKPOINT_DIR, name), self.raw_model, classes=plan.classes,
            config=self.model_config, normalization=plan.scan.normalization.to_dict(),
            epoch=epoch,
            extra={"palette": _palette(plan.dataset, plan.classes), "ignore_index": 255,
                   "metrics": row, "run": str(plan.output)},
        )  # fmt: skip

    def write_metrics(self) -> None:
        rows = self.progress["history"]
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
        atomic_write_text(self.path(METRICS_JSONL), text)
        atomic_write_text(self.path(METRICS_CSV), _csv_text(rows))
        self.curves_current = False

    def write_curves(self) -> None:
        start = _clock()
        save_curves(self.path(CURVES_PNG), self.progress["history"], self.plan.classes)
        self.curves_current = True
        if self.budget.final_s is None:  # the final confusion figure costs about as much
            self.budget.final_s = _clock() - start

    # -- epochs ---------------------------------------------------------------------
    def loaders(self) -> tuple[DataLoader, EpochSampler, DataLoader]:
        plan = self.plan
        sampler = EpochSampler(
            len(plan.train_files), seed=plan.options.seed, epoch=0,
            rank=plan.job.rank, world=plan.job.world,
        )  # fmt: skip
        common = loader_options(plan.workers, pin_memory=plan.runtime.device.type == "cuda")
        train = DataLoader(
            self.train_set,
            batch_sampler=BatchSampler(sampler, plan.batch_size, drop_last=True),
            **common,
        )
        val_set = EvalSet(plan.val_files, plan.scan, instances=self.with_objects)
        shard = list(range(plan.job.rank, len(val_set), plan.job.world))
        val = DataLoader(Subset(val_set, shard), batch_size=1, shuffle=False, **common)
        return train, sampler, val

    def validate(self) -> tuple[Any, dict[str, Any]]:
        start = _clock()
        distributed.sync_buffers(self.raw_model)
        objects = ObjectCounts(len(self.plan.classes)) if self.with_objects else None
        matrix, loss_sum, images = evaluate(
            self.raw_model, self.val_loader, num_classes=len(self.plan.classes),
            runtime=self.plan.runtime, objects=objects,
        )  # fmt: skip
        totals = torch.tensor([loss_sum, float(images)], dtype=torch.float64)
        if self.plan.job.enabled:
            matrix.all_reduce()
            totals = _all_reduce_sum(totals, self.plan.runtime.device)
            if objects is not None:
                _all_reduce_objects(objects, self.plan.runtime.device)
        self.progress["last_val_seconds"] = _clock() - start
        self.budget.record("val", self.progress["last_val_seconds"])
        val_loss = float(totals[0] / totals[1]) if totals[1] else None
        scores = {"val_loss": val_loss, **_scores(matrix, self.plan.classes)}
        if objects is not None:
            scores.update(_object_scores(objects, self.plan.classes))
        return matrix, scores


def _all_reduce_sum(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    import torch.distributed as dist

    moved = values.to(device)
    dist.all_reduce(moved)
    return moved.cpu()


#: The object counts summed over ranks (as float64: exact far beyond any count).
_OBJECT_ARRAYS = ("gt", "pred", "matched", "merges", "splits")


def _all_reduce_objects(objects: ObjectCounts, device: torch.device) -> None:
    arrays = [np.asarray(getattr(objects, name)) for name in _OBJECT_ARRAYS]
    flat = torch.from_numpy(np.concatenate([a.ravel() for a in arrays]).astype(np.float64))
    summed = _all_reduce_sum(flat, device).numpy().round().astype(np.int64)
    offset = 0
    for name, array in zip(_OBJECT_ARRAYS, arrays, strict=True):
        setattr(objects, name, summed[offset : offset + array.size].reshape(array.shape))
        offset += array.size


def _improved(monitor: str, score: float | None, best: float | None) -> bool:
    if score is None:
        return False
    if best is None:
        return True
    return score < best if monitor == "val_loss" else score > best


def train(
    dataset: Path | str,
    output: Path | str,
    options: TrainOptions | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    on_event: Callable[[TrainEvent], None] | None = None,
    **changes: Any,
) -> TrainSummary:
    """Train a model on ``dataset`` (VOC layout with train/val splits) into ``output``.

    ``options`` (or keyword ``changes`` to the defaults) say how; with ``resume=True``
    the saved options are used and ``changes`` may only extend the run (epochs, time,
    patience, …). Raises ``OptionError`` / ``DatasetError`` before writing anything,
    ``TrainingDiverged`` on a NaN loss, ``TrainingInterrupted`` after Ctrl-C (state saved).
    """
    started = _clock()
    output = Path(output)
    check_apart(output, {"dataset": Path(dataset)})
    plan = _plan(Path(dataset), output, options, changes, resume, force)
    plan.started = started
    job = plan.job

    def emit(event: TrainEvent) -> None:
        if on_event is not None and job.is_main:
            on_event(event)

    for kind, message in plan.notes:
        emit(TrainEvent(kind, message))
    distributed.start(job, plan.runtime.device)
    # Rank 0 writes, so it alone holds the folder lock (a second trainer is refused).
    lock = (
        output_folder(output, subfolders=(CHECKPOINT_DIR, STATE_DIR))
        if job.is_main
        else nullcontext()
    )
    try:
        with lock, _sigint_flag(job.is_main) as interrupted:
            return _execute(plan, emit, interrupted)
    finally:
        distributed.stop()


def _prepare_folder(plan: _Plan) -> None:
    if not plan.job.is_main:
        return
    output = plan.output
    if not plan.resume and output.is_dir():
        owned = _run_files(output, _read_config(output))
        note_foreign(output, _foreign(output, owned), "not files of a segkit run")
        if (output / REPORT_DIR).is_dir() and owned:
            warnings.warn(
                f"{output / REPORT_DIR}: describes the previous run's checkpoints and was kept; "
                f"re-run `segkit report {output}` after this run",
                SegkitNote,
                stacklevel=2,
            )
        for name in owned:
            (output / name).unlink(missing_ok=True)
    (output / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    if plan.resume:
        saved = _read_config(output) or {}
        plan.config["history_of_options"] = [
            *saved.get("history_of_options", []),
            saved.get("options"),
        ]
    plan.config["model"] = build_model(
        plan.options.model, plan.scan.channels, len(plan.classes)
    ).segkit_config.to_dict()
    atomic_write_json(output / CONFIG_FILE, plan.config)


#: An out-of-memory error within this many optimizer steps of a fresh run halves the batch.
OOM_RETRY_STEPS = 20


def _probe_batch(plan: _Plan) -> int:
    """The largest power-of-two batch (≤ 64 and the split) whose training step fits in
    CUDA memory at the crop size; BatchNorm statistics of the probe model are discarded."""
    runtime, limit = plan.runtime, min(64, len(plan.train_files) // plan.job.world)
    model = runtime.prepare_model(
        build_model(plan.options.model, plan.scan.channels, len(plan.classes))
    ).train()
    loss_fn = build_loss(plan.options.loss).to(runtime.device)
    best, size = 1, 1
    while size <= limit:
        try:
            images = torch.randn(size, plan.scan.channels, plan.input_crop, plan.input_crop)
            target = torch.zeros(
                size, plan.crop, plan.crop, dtype=torch.int64, device=runtime.device
            )
            with runtime.autocast():
                outputs = model(runtime.prepare_input(images))
            loss_fn(outputs, target).backward()
            model.zero_grad(set_to_none=True)
            best, size = size, size * 2
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()
    return best


def _execute(
    plan: _Plan, emit: Callable[[TrainEvent], None], interrupted: threading.Event
) -> TrainSummary:
    saved = _read_config(plan.output) if plan.resume else None
    if saved is not None:  # the batch and crop the run started with, also for "auto"
        plan.batch_size = int(saved["resolved"]["batch_size"])
        plan.crop = int(saved["resolved"]["crop"])
        plan.input_crop = int(saved["resolved"].get("input_crop", plan.crop))
        plan.config["resolved"].update(crop=plan.crop, input_crop=plan.input_crop)
    elif plan.options.batch_size == 0:
        plan.batch_size = _probe_batch(plan)
        emit(TrainEvent("info", f"--batch-size auto: {plan.batch_size} fits in GPU memory"))
    plan.config["resolved"]["batch_size"] = plan.batch_size
    _prepare_folder(plan)
    distributed.barrier()
    while True:
        run = _Run(plan, emit)
        try:
            return _train_epochs(plan, run, emit, interrupted)
        except torch.OutOfMemoryError:
            early = run.progress["global_step"] < OOM_RETRY_STEPS and not plan.resume
            if not (early and plan.batch_size > 1 and not plan.job.enabled):
                raise
        del run
        torch.cuda.empty_cache()
        plan.batch_size //= 2
        plan.config["resolved"]["batch_size"] = plan.batch_size
        atomic_write_json(plan.output / CONFIG_FILE, plan.config)
        emit(TrainEvent("warning", f"out of GPU memory in the first steps; starting over "
                        f"with --batch-size {plan.batch_size}"))  # fmt: skip


def _train_epochs(
    plan: _Plan, run: _Run, emit: Callable[[TrainEvent], None], interrupted: threading.Event
) -> TrainSummary:
    options, job = plan.options, plan.job
    if plan.resume:
        state = load_state(plan.output)
        state.apply(run.raw_model, run.optimizer, run.scaler)
        run.resume_from(dict(state.progress))
        done = run.progress["epoch"]
        emit(TrainEvent("info", f"resumed at epoch {done + 1}, batch {run.progress['batch'] + 1} "
                        f"(step {run.progress['global_step']}); learning-rate schedule rebuilt "
                        f"for {options.epochs} epochs"
                        + (f" / {options.time_minutes:g} min" if options.time_minutes else "")))  # fmt: skip
    train_loader, sampler, run.val_loader = run.loaders()
    epochs_limit = options.epochs if options.time_minutes is None else 10**9
    stopped = "finished"
    matrix = None
    last_row: dict[str, Any] = {}
    epoch = run.progress["epoch"]
    if options.time_minutes is None and epoch >= options.epochs:
        stopped = "already finished"
    while epoch < epochs_limit and stopped == "finished":
        first_batch = run.progress["batch"]
        sampler.epoch, sampler.skip = epoch, first_batch * plan.batch_size
        stats = EpochStats(**run.progress["stats"])
        emit(TrainEvent("epoch_start", data={"epoch": epoch + 1, "epochs": None
                        if options.time_minutes else options.epochs,
                        "batches": run.batches_per_epoch, "first_batch": first_batch}))  # fmt: skip
        epoch_started = _clock()
        run.budget.restart_ticks()

        def on_step(info: StepInfo, epoch: int = epoch) -> None:
            emit(TrainEvent("step", step=info, data={"epoch": epoch + 1}))
            boundary = info.batch % options.accumulate == 0 or info.batch == info.batches
            if boundary and options.save_every and info.global_step % options.save_every == 0:
                run.progress.update(batch=info.batch, global_step=info.global_step,
                                    stats=info.stats.to_dict())  # fmt: skip
                run.save_state()

        def should_stop(step: int) -> bool:
            run.budget.tick()
            return distributed.broadcast_flag(interrupted.is_set() or run.out_of_time())

        stats, step = train_one_epoch(
            run.model, train_loader, loss_fn=run.loss_fn, optimizer=run.optimizer,
            runtime=plan.runtime, scaler=run.scaler, num_batches=run.batches_per_epoch,
            first_batch=first_batch, global_step=run.progress["global_step"],
            accumulate=options.accumulate, clip_grad=options.clip_grad, set_lr=run.set_lr,
            stats=stats, on_step=on_step, should_stop=should_stop,
        )  # fmt: skip
        run.progress["global_step"] = step
        run.budget.record_training(stats.compute_seconds, stats.images * plan.input_crop**2)
        batches_done = first_batch + stats.batches
        # Every rank acts on rank 0's flags, or the ranks would part ways and hang.
        stop_now = distributed.broadcast_flag(interrupted.is_set())
        if stop_now and batches_done < run.batches_per_epoch:
            run.progress.update(batch=batches_done, stats=stats.to_dict())
            run.save_state()
            raise TrainingInterrupted(
                f"interrupted at epoch {epoch + 1}, batch {batches_done}; state saved. "
                f"Continue with: segkit train {plan.dataset.root} -o {plan.output} --resume"
            )
        epoch += 1
        validate = epoch % options.val_every == 0 or epoch == epochs_limit
        # Stop now unless this epoch's validation and writes leave time for another step.
        out_of_time = distributed.broadcast_flag(
            run.out_of_time(extra=run.budget.epoch_end_estimate(validate=validate))
            or (options.time_minutes is not None and batches_done < run.batches_per_epoch)
        )
        validate = validate or out_of_time
        row: dict[str, Any] = {"epoch": epoch, "train_loss": stats.loss}
        if validate:
            matrix, scores = run.validate()
            row.update(scores)
        seconds = stats.data_seconds + stats.compute_seconds
        row.update(
            lr=run.optimizer.param_groups[0]["lr"],
            images_per_s=stats.images * job.world / seconds if seconds else None,
            data_s=stats.data_seconds,
            compute_s=stats.compute_seconds,
            wall_s=_clock() - epoch_started,
        )
        row = {k: _finite(v) if isinstance(v, float) else v for k, v in row.items()}
        history = run.progress["history"]
        history.append(row)
        if validate:
            score = row.get(options.monitor)
            if _improved(options.monitor, score, run.progress["best_score"]):
                run.progress.update(best_score=score, best_epoch=epoch, since_best=0)
                if job.is_main:
                    run.save_checkpoint("best", epoch, row)
            else:
                run.progress["since_best"] += 1
        run.progress.update(epoch=epoch, batch=0, stats=EpochStats().to_dict())
        writes_started = _clock()
        if job.is_main:
            run.save_checkpoint("last", epoch, row)
            run.write_metrics()
            if validate:  # a running or interrupted run has its curves too
                run.write_curves()
        run.budget.record("save", _clock() - writes_started)
        run.save_state()
        last_row = row
        emit(TrainEvent("epoch_end", data=row))
        if stats.data_seconds > max(stats.compute_seconds, 2.0) and not run.warned_data:
            run.warned_data = True  # once per run
            emit(TrainEvent("warning", f"epoch {epoch}: data loading took longer than compute "
                            f"({stats.data_seconds:.1f}s vs {stats.compute_seconds:.1f}s); "
                            "raise --workers or keep --cache on"))  # fmt: skip
        if out_of_time:
            stopped = "time budget used"
        elif options.patience is not None and run.progress["since_best"] >= options.patience:
            stopped = f"no improvement for {options.patience} validations"
        elif stop_now:
            raise TrainingInterrupted(
                f"interrupted after epoch {epoch}; state saved. "
                f"Continue with: segkit train {plan.dataset.root} -o {plan.output} --resume"
            )
    if matrix is None:  # the last epoch was not validated (or nothing ran): validate now
        matrix, scores = run.validate()
        last_row = {**(run.progress["history"] or [{}])[-1], **scores}
    final_started = _clock()
    if job.is_main:
        atomic_write_json(
            plan.output / CONFUSION_JSON,
            {"classes": list(plan.classes), "epoch": run.progress["epoch"],
             "checkpoint": "checkpoints/last", "confusion": matrix.to_dict()},
        )  # fmt: skip
        save_confusion(plan.output / CONFUSION_PNG, np.asarray(matrix.matrix), plan.classes)
        if not run.curves_current:
            run.write_curves()
        if not checkpoint_paths(plan.output / CHECKPOINT_DIR / "best")[1].is_file():
            run.save_checkpoint("best", run.progress["epoch"], last_row)
    run.budget.record("final", _clock() - final_started)
    distributed.barrier()
    return TrainSummary(
        run=plan.output,
        epochs=run.progress["epoch"],
        stopped=stopped,
        monitor=options.monitor,
        best_epoch=run.progress["best_epoch"],
        best_score=run.progress["best_score"],
        best_checkpoint=plan.output / CHECKPOINT_DIR / "best.safetensors",
        last_checkpoint=plan.output / CHECKPOINT_DIR / "last.safetensors",
        final=last_row,
        device=str(plan.runtime.device),
        precision=plan.runtime.precision,
        seconds=run.elapsed(),
        next_command=f"segkit report {plan.output}",
    )


__all__ = ["SegkitError", "TrainEvent", "TrainSummary", "TrainingInterrupted", "train"]
