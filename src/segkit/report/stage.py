"""The report stage: a run (model + dataset split) or a folder of predicted masks → a report
folder (report.json, CSV tables, report.md, pictures, report.html).

Everything is scored and rendered in memory first; files are only written once every
input has been read without error, each one atomically, so bad input leaves nothing
half-written. Run folders hold ``config.json`` (``segkit train`` writes the dataset
folder at ``"dataset": {"root": ...}``; a plain ``"dataset": "path"`` works too) and
``checkpoints/{best,last}.safetensors`` with their JSON sidecars (``segkit.checkpoint``).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from numpy.typing import NDArray

from segkit import __version__
from segkit._io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
    write_error_reason,
)
from segkit._pillow import DECODE_ERRORS, decode_error_text, pixel_limit_lifted
from segkit._text import short_list
from segkit.dataset import Dataset, Sample, open_dataset
from segkit.errors import DatasetError, OptionError, ReportError, SegkitError, SegkitNote
from segkit.lock import check_not_busy
from segkit.manifest import manifest_path
from segkit.metrics import ConfusionMatrix, ObjectCounts, pixel_scores
from segkit.ownership import (
    check_apart,
    drop_claim,
    is_bookkeeping,
    output_folder,
    read_claim,
    write_claim,
)
from segkit.report import html, plots, tables
from segkit.voc import BACKGROUND_LABEL, IGNORE_INDEX, read_class_mask, read_mask, voc_colormap

FORMAT = "segkit-report"
SCHEMA_VERSION = 1
REPORT_NAME = "report.json"
OVERLAY_DIR = "overlays"
CHECKPOINT_NAMES = ("best", "last")
CLAIM_STAGE = "report"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReportOptions:
    """Every option of ``segkit report``, validated once.

    ``mode`` "run" scores a run folder's model (``gt`` overrides the dataset its
    config names); "predictions" scores a folder of masks named by id against the
    dataset ``gt``. ``split`` None means ``val`` where the dataset
    has that split file, else every image. ``classes`` (names or ids) restricts the
    means; ``exclude_background`` drops class 0 from them. ``inference`` holds the
    tiling options of run mode (an ``InferenceOptions`` dict).
    """

    mode: str = "run"
    gt: Path | None = None
    split: str | None = None
    checkpoint: str = "best"
    allow_missing: bool = False
    worst: int = 8
    classes: tuple[str, ...] | None = None
    exclude_background: bool = False
    device: str = "auto"
    inference: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("run", "predictions"):
            raise OptionError(f"mode must be 'run' or 'predictions', got {self.mode!r}")
        if self.mode == "predictions" and self.gt is None:
            raise OptionError("--pred needs --gt DATASET to score against")
        if self.checkpoint not in CHECKPOINT_NAMES:
            raise OptionError(
                f"--checkpoint must be one of {', '.join(CHECKPOINT_NAMES)}, "
                f"got {self.checkpoint!r}"
            )
        if isinstance(self.worst, bool) or not isinstance(self.worst, int) or self.worst < 0:
            raise OptionError(f"--worst must be a non-negative integer, got {self.worst!r}")
        if self.split is not None and (not self.split or "/" in self.split):
            raise OptionError(f"--split must be a split name such as val, got {self.split!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (recorded in report.json)."""
        return {
            "mode": self.mode,
            "gt": None if self.gt is None else str(self.gt),
            "split": self.split,
            "checkpoint": self.checkpoint,
            "allow_missing": self.allow_missing,
            "worst": self.worst,
            "classes": None if self.classes is None else list(self.classes),
            "exclude_background": self.exclude_background,
            "device": self.device,
            "inference": dict(self.inference),
        }


@dataclass(frozen=True)
class ReportSummary:
    """What the report stage wrote: the folder and the full report.json content."""

    output: Path
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """report.json's content (what ``--json`` prints)."""
        return self.report


@dataclass(frozen=True)
class CompareSummary:
    """Per-class and headline deltas (B − A) of two reports."""

    a: Path
    b: Path
    output: Path
    rows: list[dict[str, Any]]
    headline: dict[str, Any]
    reports: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """compare.json's content."""
        return {
            "format": "segkit-report-compare",
            "a": str(self.a),
            "b": str(self.b),
            "reports": self.reports,
            "classes": self.classes,
            "notes": self.notes,
            "summary": self.headline,
            "per_class": self.rows,
        }


# -- reading inputs ----------------------------------------------------------------------


def _split_ids(dataset: Dataset, split: str | None) -> tuple[str, list[str]]:
    if split == "all" or (split is None and not dataset.split_file("val").is_file()):
        return "all", dataset.ids
    name = split or "val"
    if not dataset.split_file(name).is_file():
        folder = dataset.split_file(name).parent
        known = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        if known:  # an unknown value, not missing data
            raise OptionError(f"{folder}: no split {name!r}; splits: {', '.join(known)}, or 'all'")
    return name, dataset.read_split(name)


def _palette(dataset: Dataset, num_classes: int) -> NDArray[np.uint8]:
    """256 colours by id: the manifest's class colours where given, else the VOC map."""
    colors = voc_colormap(256).copy()
    named = (dataset.manifest or {}).get("colors")
    if isinstance(named, dict):
        for index, name in enumerate(dataset.classes[:num_classes]):
            value = named.get(name)
            if isinstance(value, list) and len(value) == 3:
                colors[index] = value
    return colors


def _colour_ids(
    rgb: NDArray[np.uint8], colors: NDArray[np.uint8], num_classes: int, path: Path
) -> NDArray[np.uint8]:
    """Map an RGB mask to ids through the palette (classes and the ignore colour)."""
    allowed = {tuple(int(v) for v in colors[i]): i for i in range(num_classes)}
    allowed.setdefault(tuple(int(v) for v in colors[IGNORE_INDEX]), IGNORE_INDEX)
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    found, inverse = np.unique(codes.reshape(-1), return_inverse=True)
    lut = np.zeros(found.size, np.uint8)
    for index, code in enumerate(found.tolist()):
        colour = (code >> 16, (code >> 8) & 255, code & 255)
        if colour not in allowed:
            raise ReportError(
                f"{path}: RGB mask holds colour {colour}, which is no class colour of the "
                "dataset's palette; save predictions as palette or 8-bit PNGs of class ids"
            )
        lut[index] = allowed[colour]
    return lut[inverse].reshape(rgb.shape[:2])


def read_prediction(path: Path, colors: NDArray[np.uint8], num_classes: int) -> NDArray[np.uint8]:
    """A predicted mask: palette or 8-bit PNG of class ids, or RGB mapped through the
    dataset's palette when every colour is a class colour."""
    try:
        with pixel_limit_lifted(), PIL.Image.open(path) as image:
            mode = image.mode
            if mode in ("P", "L"):
                return np.asarray(image, dtype=np.uint8)
            if mode in ("RGB", "RGBA"):
                rgb = np.asarray(image.convert("RGB"))
            else:
                raise ReportError(
                    f"{path}: mask has mode {mode!r}; predictions must be palette (P) or 8-bit "
                    "(L) PNGs of class ids, or RGB in the dataset's colours"
                )
    except DECODE_ERRORS as error:
        raise ReportError(f"{path}: cannot read PNG ({error})") from error
    return _colour_ids(rgb, colors, num_classes, path)


def _read_image(path: Path, channels: int) -> NDArray[Any]:
    """An image as ``[H, W]`` (1 channel) or ``[H, W, 3]``; 16-bit grayscale stays uint16."""
    try:
        with pixel_limit_lifted(), PIL.Image.open(path) as image:
            if image.mode.startswith("I"):  # 16-bit microscopy: keep the bit depth
                gray = np.asarray(image).astype(np.uint16)
                return gray if channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)
            return np.asarray(image.convert("RGB" if channels == 3 else "L"))
    except DECODE_ERRORS as error:
        raise ReportError(f"{path}: cannot read image ({decode_error_text(error)})") from error


def _picture(sample: Sample, target: NDArray[np.uint8], colors: NDArray[np.uint8]) -> NDArray[Any]:
    """The image of an overlay as 8-bit RGB (the coloured ground truth if it has none)."""
    if sample.image is None:
        return plots.colorize(target, colors)
    image = _read_image(sample.image, 3)
    if image.shape[:2] != target.shape:
        return plots.colorize(target, colors)
    return (image // 257).astype(np.uint8) if image.dtype == np.uint16 else image


# -- scoring -----------------------------------------------------------------------------


@dataclass
class _Scorer:
    """Accumulates the dataset-level matrix, object counts and per-image rows."""

    num_classes: int
    with_objects: bool
    worst: int
    matrix: ConfusionMatrix = field(init=False)
    objects: ObjectCounts | None = field(init=False)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    _worst: list[tuple[float, int, str, NDArray[np.uint8]]] = field(default_factory=list)
    instance_images: int = 0

    def __post_init__(self) -> None:
        self.matrix = ConfusionMatrix(self.num_classes)
        self.objects = ObjectCounts(self.num_classes) if self.with_objects else None

    def add(
        self,
        sample_id: str,
        target: NDArray[np.uint8],
        prediction: NDArray[np.uint8],
        instances: NDArray[np.integer] | None,
    ) -> None:
        image = ConfusionMatrix(self.num_classes)
        image.update(target, prediction)  # raises on ids >= num_classes before counting
        self.matrix = self.matrix + image
        scores = image.scores()
        miou = None if math.isnan(scores.miou) else scores.miou
        aacc = None if math.isnan(scores.aacc) else scores.aacc
        self.per_image.append(
            {"id": sample_id, "miou": miou, "aacc": aacc, "pixels": scores.pixels}
        )
        if self.objects is not None and instances is not None:
            self.objects.update(target, instances, prediction)
            self.instance_images += 1
        if self.worst and miou is not None:
            # Keep the N lowest-mIoU predictions: a max-heap on mIoU via negation.
            item = (-miou, -len(self.per_image), sample_id, prediction)
            if len(self._worst) < self.worst:
                heapq.heappush(self._worst, item)
            elif item > self._worst[0]:
                heapq.heapreplace(self._worst, item)

    def worst_predictions(self) -> list[tuple[str, float, NDArray[np.uint8]]]:
        ordered = sorted(self._worst, key=lambda item: (-item[0], -item[1]))
        return [(sample_id, -neg, pred) for neg, _, sample_id, pred in ordered]


def _check_sizes(path: Path, target: NDArray[Any], prediction: NDArray[Any]) -> None:
    if target.shape != prediction.shape:
        raise ReportError(
            f"{path}: size {prediction.shape[1]}x{prediction.shape[0]} differs from the ground "
            f"truth's {target.shape[1]}x{target.shape[0]} (width x height)"
        )


def _score_all(
    samples: Sequence[Sample],
    predict: Callable[[Sample], tuple[Path, NDArray[np.uint8]]],
    scorer: _Scorer,
    progress: Progress | None,
) -> list[str]:
    """Score every sample; returns one error line per bad input instead of stopping."""
    errors: list[str] = []
    for done, sample in enumerate(samples, start=1):
        try:
            if sample.class_mask is None:
                raise ReportError(f"{sample.id}: the dataset has no class mask for this id")
            target = read_class_mask(sample.class_mask)
            path, prediction = predict(sample)
            _check_sizes(path, target, prediction)
            instances = None
            if scorer.with_objects and sample.object_mask is not None:
                instances = read_mask(sample.object_mask, "instance")
                if instances.shape != target.shape:
                    raise ReportError(f"{sample.object_mask}: size differs from the class mask")
            try:
                scorer.add(sample.id, target, prediction, instances)
            except ValueError as error:
                raise ReportError(f"{path}: {error}") from None
        except SegkitError as error:
            errors.append(str(error))
        if progress is not None:
            progress(done, len(samples))
    return errors


# -- the two modes -----------------------------------------------------------------------


def _class_subset(options: ReportOptions, names: Sequence[str], k: int) -> list[int] | None:
    if options.classes is None:
        return None
    ids = []
    for item in options.classes:
        if item in names:
            ids.append(list(names).index(item))
        elif item.isdigit() and int(item) < k:
            ids.append(int(item))
        else:
            raise OptionError(f"--classes: unknown class {item!r}; classes: {', '.join(names)}")
    return ids


def _prediction_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ReportError(f"{folder}: predictions folder not found")
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() == ".png" and not p.name.startswith(".")
    }


def _selected_samples(
    dataset: Dataset,
    ids: list[str],
    available: set[str] | None,
    allow_missing: bool,
    where: Path | None,
) -> tuple[list[Sample], list[str], list[str]]:
    """Samples to score, missing ids, and error lines (missing without --allow-missing)."""
    known = {sample.id: sample for sample in dataset.samples}
    errors = [
        f"{dataset.root}: the split lists {i!r}, which is not in the dataset"
        for i in ids
        if i not in known
    ]
    ids = [i for i in ids if i in known]
    missing = [] if available is None else [i for i in ids if i not in available]
    if missing and not allow_missing:
        errors += [
            f"{where}/{i}.png: prediction missing for id {i!r} of the split "
            "(--allow-missing scores the others)"
            for i in missing
        ]
    skipped = set(missing)
    return [known[i] for i in ids if i not in skipped], missing, errors


def _prediction_mode(
    folder: Path, options: ReportOptions, progress: Progress | None
) -> tuple[dict[str, Any], _Scorer, Dataset, list[str], NDArray[np.uint8]]:
    assert options.gt is not None
    dataset = open_dataset(options.gt)
    k = _num_classes(dataset)
    split, ids = _split_ids(dataset, options.split)
    files = _prediction_files(folder)
    samples, missing, errors = _selected_samples(
        dataset, ids, set(files), options.allow_missing, folder
    )
    wanted = set(ids)
    errors += [
        f"{path}: extra file, no id {stem!r} in split {split}"
        for stem, path in files.items()
        if stem not in wanted
    ]
    colors = _palette(dataset, k)
    scorer = _Scorer(k, _has_instances(dataset, samples), options.worst)

    def predict(sample: Sample) -> tuple[Path, NDArray[np.uint8]]:
        path = files[sample.id]
        return path, read_prediction(path, colors, k)

    errors += _score_all(samples, predict, scorer, progress)
    provenance = {
        "mode": "predictions",
        "source": str(folder),
        "predictions": str(folder),
        "checkpoint": None,
    }
    return (
        {"split": split, "missing": missing, "provenance": provenance, "errors": errors},
        scorer,
        dataset,
        list(dataset.classes),
        colors,
    )


def _num_classes(dataset: Dataset) -> int:
    if not dataset.classes:
        raise ReportError(
            f"{dataset.root}: no class list (segkit.json, class_names.txt or labels.txt); "
            "the report needs class names"
        )
    return len(dataset.classes)


def _has_instances(dataset: Dataset, samples: Sequence[Sample]) -> bool:
    return any(sample.object_mask is not None for sample in samples)


def _read_json(path: Path, hint: str = "") -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: not found{hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from error


def _run_dataset(run: Path, options: ReportOptions) -> Path:
    if options.gt is not None:
        return options.gt
    config_path = run / "config.json"
    if not config_path.is_file():  # a path of the wrong kind: a usage error
        hint = (
            "; it is a dataset: score predictions with --pred DIR --gt DATASET"
            if (run / "SegmentationClass").is_dir()
            else ""
        )
        raise OptionError(f"{run}: not a segkit run folder (no config.json){hint}")
    config = _read_json(config_path)
    value = config.get("dataset") if isinstance(config, dict) else None
    if isinstance(value, dict):  # segkit train: {"root": ..., "classes": ..., ...}
        value = value.get("root")
    if not isinstance(value, str):
        raise ReportError(f"{config_path}: no 'dataset' path; pass --gt DATASET")
    path = Path(value)
    if path.is_absolute():
        candidates = [path]
    else:  # recorded as typed: relative to wherever training ran
        candidates = [path, *(folder / path for folder in (run, *run.resolve().parents))]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ReportError(
        f"{path}: dataset folder not found (the path comes from {config_path}; "
        "--gt DATASET overrides it)"
    )


def _run_mode(
    run: Path, options: ReportOptions, progress: Progress | None
) -> tuple[dict[str, Any], _Scorer, Dataset, list[str], NDArray[np.uint8]]:
    import torch

    from segkit.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint
    from segkit.devices import resolve_device
    from segkit.inference import InferenceOptions, image_to_tensor, predict_mask

    if not run.is_dir():
        raise ReportError(f"{run}: run folder not found")
    dataset = open_dataset(_run_dataset(run, options))
    tensors, sidecar = checkpoint_paths(run / "checkpoints" / options.checkpoint)
    device = resolve_device(options.device)
    try:
        loaded = load_checkpoint(tensors, device=device)
    except CheckpointError as error:
        raise ReportError(str(error)) from None
    meta = loaded.meta
    k = max(meta.model.num_classes, 2)
    names = list(dataset.classes) or list(meta.classes)
    if dataset.classes and list(dataset.classes) != list(meta.classes):
        raise ReportError(
            f"{sidecar}: the model's classes {meta.classes} differ from the dataset's "
            f"{list(dataset.classes)} ({dataset.root})"
        )
    try:
        inference = InferenceOptions(**options.inference)
    except TypeError as error:
        raise OptionError(f"inference options: {error}") from None
    split, ids = _split_ids(dataset, options.split)
    samples, _, errors = _selected_samples(dataset, ids, None, False, None)
    colors = _palette(dataset, k)
    scorer = _Scorer(k, _has_instances(dataset, samples), options.worst)
    channels = meta.model.in_channels

    def predict(sample: Sample) -> tuple[Path, NDArray[np.uint8]]:
        if sample.image is None:
            raise ReportError(f"{sample.id}: the dataset has no image for this id")
        image = image_to_tensor(_read_image(sample.image, channels), meta.normalization)
        if image.shape[0] != channels:
            raise ReportError(
                f"{sample.image}: {image.shape[0]} channels, the model takes {channels}"
            )
        mask = predict_mask(loaded.model, image, inference)
        return sample.image, mask.to("cpu", torch.uint8).numpy()

    errors += _score_all(samples, predict, scorer, progress)
    provenance = {
        "mode": "run",
        "source": str(run),
        "predictions": None,
        "checkpoint": {
            "name": options.checkpoint,
            "path": str(tensors),
            "sha256": sha256_file(tensors),
            "architecture": meta.model.name,
            "epoch": meta.epoch,
        },
        "device": str(device),
        "inference": inference.to_dict(),
    }
    return (
        {"split": split, "missing": [], "provenance": provenance, "errors": errors},
        scorer,
        dataset,
        names,
        colors,
    )


# -- assembling and writing -------------------------------------------------------------


def _default_output(source: Path, options: ReportOptions) -> Path:
    if options.mode == "predictions":
        return source.parent / f"{source.name}-report"
    return source / "report"


def _check_output(output: Path, force: bool) -> None:
    # Both are usage problems (pick another -o), exit 2 as in `segkit train`.
    if output.exists() and not output.is_dir():
        raise OptionError(f"{output}: exists and is not a folder")
    # segkit's lock and claim are no one's outputs: a folder holding only them is a new
    # report's, being written (the lock then names the writer) or stopped (the claim).
    if (
        output.is_dir()
        and any(not is_bookkeeping(p.name) for p in output.iterdir())
        and not (output / REPORT_NAME).is_file()
        and read_claim(output, CLAIM_STAGE) is None
        and not force
    ):
        raise OptionError(
            f"{output}: folder is not empty and holds no {REPORT_NAME}; "
            "choose another -o or pass --force"
        )


def build_report(
    source: Path,
    meta: dict[str, Any],
    scorer: _Scorer,
    dataset: Dataset,
    names: Sequence[str],
    options: ReportOptions,
) -> dict[str, Any]:
    """The report.json dict from the scores (pure apart from hashing the manifest)."""
    subset = _class_subset(options, names, scorer.num_classes)
    matrix = scorer.matrix.matrix
    scores = pixel_scores(matrix, classes=subset, exclude_background=options.exclude_background)
    pixel = scores.to_dict()
    for row in pixel["per_class"]:
        row["class"] = tables.class_name(names, row["id"])
    manifest = manifest_path(dataset.root)
    objects = None
    if scorer.objects is not None:
        objects = {
            "images_with_instances": scorer.instance_images,
            "matching": "one-to-one Hungarian on IoU within a class; merge/split by >50% cover",
            "counts": scorer.objects.to_dict(),
            "scores": scorer.objects.scores().to_dict(),
        }
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "provenance": {
            **meta["provenance"],
            "dataset": str(dataset.root),
            "dataset_manifest_sha256": sha256_file(manifest) if manifest.is_file() else None,
            "split": meta["split"],
            "segkit_version": __version__,
            "command": list(options.command),
        },
        "options": options.to_dict(),
        "classes": list(names),
        "split": meta["split"],
        "images": len(scorer.per_image),
        "missing": meta["missing"],
        "pixel": pixel,
        "confusion": scorer.matrix.to_dict(),
        "objects": objects,
        "per_image": tables.per_image_order(scorer.per_image),
    }


def _render(
    report: dict[str, Any], scorer: _Scorer, dataset: Dataset, colors: NDArray[np.uint8]
) -> dict[str, bytes]:
    """Every file of the report folder as bytes (rendered before anything is written)."""
    names = report["classes"]
    matrix = np.array(report["confusion"]["matrix"], np.int64)
    files: dict[str, bytes] = {}
    confusion = plots.confusion_png(matrix, names)
    overlays = []
    for rank, (sample_id, miou, prediction) in enumerate(scorer.worst_predictions(), start=1):
        sample = dataset.sample(sample_id)
        assert sample.class_mask is not None
        target = read_class_mask(sample.class_mask)
        image = _picture(sample, target, colors)
        caption = f"{rank}. {sample_id} (mIoU {miou:.4f})"
        png = plots.overlay_png(image, target, prediction, colors, title=caption)
        files[f"{OVERLAY_DIR}/{rank:03d}.png"] = png
        overlays.append((caption, png))
    rows = tables.per_class_rows(report)
    columns = list(tables.PIXEL_COLUMNS)
    if report["objects"]:
        columns += tables.OBJECT_COLUMNS
    files["per_class.csv"] = tables.csv_text(rows, columns).encode()
    files["confusion_matrix.csv"] = tables.confusion_csv(matrix, names).encode()
    files["per_image.csv"] = tables.csv_text(
        report["per_image"], ["id", "miou", "aacc", "pixels"]
    ).encode()
    files["report.md"] = tables.markdown(report).encode()
    files["confusion_matrix.png"] = confusion
    files["report.html"] = html.render_html(
        report, confusion_png=confusion, overlays=overlays
    ).encode()
    # The record of what this report owns in its folder (so a rerun may replace it).
    report["files"] = sorted([*files, REPORT_NAME])
    files[REPORT_NAME] = (
        json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    ).encode()
    return files


def _owned_files(output: Path) -> set[str]:
    """Files an earlier report wrote in ``output``: its record, or its claim if it was
    stopped before writing the record."""
    owned: set[str] = set()
    try:
        previous = read_report(output)
    except ReportError:
        previous = {}
    if isinstance(previous.get("files"), list):
        owned.update(name for name in previous["files"] if isinstance(name, str))
    claim = read_claim(output, CLAIM_STAGE) or {}
    if isinstance(claim.get("pending"), list):
        owned.update(name for name in claim["pending"] if isinstance(name, str))
    return owned


def _write(output: Path, files: dict[str, bytes]) -> None:
    """Write the report folder under its lock: files of the user's are never replaced,
    files an earlier report wrote and this one does not are removed."""
    with output_folder(output, subfolders=(OVERLAY_DIR,)):
        owned = _owned_files(output)
        in_the_way = [name for name in files if (output / name).exists() and name not in owned]
        if in_the_way:
            raise ReportError(
                f"{output}: {short_list(in_the_way)} not written by segkit; "
                "move them away and re-run"
            )
        write_claim(output, CLAIM_STAGE, pending=sorted(files))
        try:
            for name, data in files.items():  # report.json, the record, comes last
                atomic_write_bytes(output / name, data)
            for name in sorted(owned - set(files)):
                with contextlib.suppress(FileNotFoundError):
                    (output / name).unlink()
        except OSError as error:
            raise ReportError(write_error_reason(error)) from None
        drop_claim(output, CLAIM_STAGE)


def report(
    source: Path,
    output: Path | None = None,
    options: ReportOptions | None = None,
    progress: Progress | None = None,
) -> ReportSummary:
    """Score a run folder (or, with ``options.gt``, a predictions folder) and write the
    report folder (default: ``RUN/report`` or ``PREDICTIONS-report`` beside it)."""
    options = options or ReportOptions()
    source = Path(source)
    output = Path(output) if output is not None else _default_output(source, options)
    what = "predictions folder" if options.mode == "predictions" else "run folder"
    check_apart(output, {what: source, "dataset": options.gt}, may_hold_output=("run folder",))
    _check_output(output, options.force)
    check_not_busy(output)  # the lock itself is taken for the writes, at the end
    mode = _prediction_mode if options.mode == "predictions" else _run_mode
    try:
        meta, scorer, dataset, names, colors = mode(source, options, progress)
    except DatasetError as error:
        raise ReportError(str(error)) from None
    if meta["errors"]:
        raise ReportError("\n".join(meta["errors"]))
    if not scorer.per_image:
        raise ReportError(f"{source}: nothing to score in split {meta['split']}")
    check_apart(output, {"dataset": dataset.root})  # the one the run recorded
    result = build_report(source, meta, scorer, dataset, names, options)
    _write(output, _render(result, scorer, dataset, colors))
    return ReportSummary(output, result)


def read_report(path: Path) -> dict[str, Any]:
    """A report.json (or the folder holding one), checked to be a segkit report."""
    path = Path(path)
    file = path / REPORT_NAME if path.is_dir() else path
    data = _read_json(file)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReportError(f"{file}: not a segkit report")
    return data


def _identity(report: dict[str, Any]) -> dict[str, Any]:
    """What a compared report scored: its dataset, split and provenance."""
    prov = report.get("provenance") or {}
    return {
        "dataset": prov.get("dataset"),
        "dataset_manifest_sha256": prov.get("dataset_manifest_sha256"),
        "split": report.get("split"),
        "images": report.get("images"),
        "classes": list(report.get("classes") or []),
        "provenance": prov,
    }


def _compare_notes(a: dict[str, Any], b: dict[str, Any], shared: list[str]) -> list[str]:
    """Why the deltas of two reports may not mean what they seem (one line each)."""
    ia, ib = _identity(a), _identity(b)
    notes = []
    hash_a, hash_b = ia["dataset_manifest_sha256"], ib["dataset_manifest_sha256"]
    if hash_a and hash_b:
        same_data = hash_a == hash_b
    else:  # a dataset without segkit.json: its path is all there is to go by
        same_data = ia["dataset"] == ib["dataset"] and not (hash_a or hash_b)
    if not same_data:
        notes.append(
            f"the reports score different datasets ({ia['dataset']} vs {ib['dataset']}, "
            "by manifest hash or path); the deltas compare different images"
        )
    if ia["split"] != ib["split"]:
        notes.append(
            f"the reports score different splits (A: {ia['split']}, B: {ib['split']}); "
            "the deltas compare different images"
        )
    if ia["classes"] != ib["classes"]:
        notes.append(
            f"the reports' classes differ: per-class deltas cover the {len(shared)} shared "
            "class(es); the headline means average each report's own classes, mIoU_shared "
            "the IoU of the shared classes scored in both"
        )
    return notes


def compare(a: Path, b: Path, output: Path | None = None) -> CompareSummary:
    """Per-class deltas B − A of two reports; writes compare.json and compare.csv to
    ``output`` (default: B's report folder)."""
    report_a, report_b = read_report(a), read_report(b)
    shared = tables.shared_classes(report_a, report_b)
    # Every segkit dataset has _background_: sharing only it relates nothing.
    if not [name for name in shared if name != BACKGROUND_LABEL]:
        raise ReportError(
            f"{b}: shares no class with {a} (classes {short_list(report_b['classes'])} vs "
            f"{short_list(report_a['classes'])}); nothing to compare"
        )
    notes = _compare_notes(report_a, report_b, shared)
    for note in notes:
        warnings.warn(note, SegkitNote, stacklevel=2)
    rows = tables.compare_rows(report_a, report_b)
    headline = tables.compare_summary(report_a, report_b)
    b_folder = Path(b) if Path(b).is_dir() else Path(b).parent
    output = Path(output) if output is not None else b_folder
    names = {"a": list(report_a["classes"]), "b": list(report_b["classes"])}
    summary = CompareSummary(
        Path(a),
        Path(b),
        output,
        rows,
        headline,
        reports={"a": _identity(report_a), "b": _identity(report_b)},
        classes={
            "compared": shared,
            "only_a": [n for n in names["a"] if n not in shared],
            "only_b": [n for n in names["b"] if n not in shared],
        },
        notes=notes,
    )
    columns = ["class"] + [f"{k}_{s}" for k in tables.DELTA_KEYS for s in ("a", "b", "delta")]
    with output_folder(output):
        try:
            atomic_write_json(output / "compare.json", summary.to_dict())
            atomic_write_text(output / "compare.csv", tables.csv_text(rows, columns))
        except OSError as error:
            raise ReportError(write_error_reason(error)) from None
    return summary
