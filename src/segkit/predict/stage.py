"""The predict stage: images → palette masks, overlays, probabilities, labelme JSON, ranking.

Layout of the output folder (nothing is written anywhere else)::

    masks/<id>.png        palette PNG of class ids (the dataset's conventions)
    overlays/<id>.jpg     the image tinted by the predicted classes
    probs/<id>.npy        float16 [K, H, W] class probabilities (--save-probs)
    labelme/<id>.json     polygons for the next labeling round (--labelme)
    ranking.csv           images by uncertainty, most uncertain first (--rank uncertainty)
    predictions.json      the record: options, checkpoint, every image and file written

``<id>`` is the image's path relative to the folder it was found in (the file name for
a file argument), without its suffix. Images are read as ``convert`` reads them (EXIF
orientation applied), so masks and polygons share labelme's display frame.

Every file is written atomically. The folder is claimed and locked
(:mod:`segkit.ownership`); only files an earlier predict run recorded are replaced or
removed. A labelme JSON that a person made, or edited after segkit wrote it, is kept
unless ``overwrite_annotations``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import PIL.Image
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from segkit import __version__
from segkit._csv import csv_text
from segkit._io import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    sha256_bytes,
    sha256_file,
)
from segkit._text import short_list
from segkit.checkpoint import checkpoint_paths, load_checkpoint
from segkit.convert_one import _visualization
from segkit.defaults import DEFAULT_MAX_PIXELS
from segkit.devices import Runtime, resolve_runtime
from segkit.errors import AnnotationError, CheckpointError, DatasetError, OptionError, SegkitNote
from segkit.inference import InferenceOptions, class_argmax, predict_stripes
from segkit.labelme import Annotation, load_image
from segkit.ownership import (
    check_apart,
    check_real_folders,
    drop_claim,
    output_folder,
    read_claim,
    stays_inside,
    write_claim,
)
from segkit.predict.polygons import mask_regions, regions_to_shapes
from segkit.voc import encode_palette_png

FORMAT = "segkit-predictions"
SCHEMA_VERSION = 1
RECORD_NAME = "predictions.json"
RANKING_NAME = "ranking.csv"
CLAIM_STAGE = "predict"
SUBFOLDERS = ("masks", "overlays", "probs", "labelme")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
CHECKPOINT_NAMES = ("best", "last")
#: The labelme release whose JSON layout the files follow.
LABELME_VERSION = "6.3.1"
#: A pixel is low-confidence when its most likely class has less probability than this.
LOW_CONFIDENCE = 0.75
#: The JSON ``flags`` entry set on images ranked uncertain (``--rank uncertainty``).
UNCERTAIN_FLAG = "segkit_uncertain"
#: ... when their normalised mean entropy or low-confidence share reaches these.
UNCERTAIN_ENTROPY = 0.25
UNCERTAIN_SHARE = 0.10
#: Without ``tile``: whole-image prediction up to this side, else tiles of AUTO_TILE.
MAX_WHOLE_SIDE = 1024
AUTO_TILE = 512

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PredictOptions:
    """Every option of ``segkit predict``, validated once.

    ``tile`` None picks the whole image up to ``MAX_WHOLE_SIDE`` pixels a side and
    ``AUTO_TILE`` tiles beyond; ``overlap`` is in pixels. ``simplify`` is the polygon
    tolerance in pixels (0 = exact outlines); ``min_area`` drops smaller regions.
    """

    run: Path
    checkpoint: str = "best"
    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None
    overlap: int = 64
    batch_size: int = 4
    tta: str = "none"
    save_probs: bool = False
    labelme: bool = False
    embed_image: bool = False
    simplify: float = 0.5
    min_area: int = 0
    rank: str = "none"
    force: bool = False
    overwrite_annotations: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.checkpoint not in CHECKPOINT_NAMES:
            raise OptionError(
                f"--checkpoint must be one of {', '.join(CHECKPOINT_NAMES)}, got {self.checkpoint!r}"
            )
        for name in ("overlap", "batch_size", "min_area"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OptionError(f"--{name.replace('_', '-')} must be a whole number ≥ 0")
        if self.batch_size < 1:
            raise OptionError("--batch-size must be at least 1")
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int):
            raise OptionError(f"--max-pixels must be a whole number, got {self.max_pixels!r}")
        if self.max_pixels < 1:
            raise OptionError("--max-pixels must be positive")
        if self.tile is not None and (
            isinstance(self.tile, bool) or not isinstance(self.tile, int) or self.tile < 8
        ):
            raise OptionError(f"--tile must be at least 8 pixels, got {self.tile!r}")
        if self.tile is not None and self.overlap >= self.tile:
            raise OptionError(f"--overlap {self.overlap} must be smaller than --tile {self.tile}")
        if self.tta not in ("none", "flip"):
            raise OptionError(f"--tta must be none or flip, got {self.tta!r}")
        if self.rank not in ("none", "uncertainty"):
            raise OptionError(f"--rank must be none or uncertainty, got {self.rank!r}")
        if not (isinstance(self.simplify, (int, float)) and 0 <= self.simplify < math.inf):
            raise OptionError(f"--simplify must be a number of pixels ≥ 0, got {self.simplify!r}")
        if self.embed_image and not self.labelme:
            raise OptionError("--embed-image needs --labelme")
        if self.overwrite_annotations and not self.labelme:
            raise OptionError("--overwrite-annotations needs --labelme")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (recorded in predictions.json)."""
        return {
            "run": str(self.run),
            "checkpoint": self.checkpoint,
            "device": self.device,
            "precision": self.precision,
            "tile": self.tile,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "tta": self.tta,
            "save_probs": self.save_probs,
            "labelme": self.labelme,
            "embed_image": self.embed_image,
            "simplify": self.simplify,
            "min_area": self.min_area,
            "rank": self.rank,
            "force": self.force,
            "overwrite_annotations": self.overwrite_annotations,
            "max_pixels": self.max_pixels,
        }

    def output_key(self) -> dict[str, Any]:
        """The options an image's outputs depend on (a change redoes the image)."""
        key = self.to_dict()
        skip = (
            "run",
            "device",
            "batch_size",
            "rank",
            "force",
            "overwrite_annotations",
            "max_pixels",
        )
        for name in skip:
            key.pop(name)
        return key


@dataclass(frozen=True)
class PredictSummary:
    """What a predict run did: per-image rows, totals, problems."""

    output: Path
    classes: list[str]
    images: list[dict[str, Any]]
    skipped: int
    seconds: float
    megapixels: float
    class_pixels: list[int]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    kept_annotations: list[str] = field(default_factory=list)
    ranking: list[dict[str, Any]] | None = None
    device: str = ""
    precision: str = ""

    @property
    def ok(self) -> bool:
        """False when some image could not be predicted."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``--json`` prints)."""
        return {
            "ok": self.ok,
            "output": str(self.output),
            "classes": list(self.classes),
            "images": len(self.images),
            "predicted": len(self.images) - self.skipped,
            "skipped_up_to_date": self.skipped,
            "seconds": round(self.seconds, 3),
            "megapixels": round(self.megapixels, 3),
            "megapixels_per_second": round(self.megapixels / self.seconds, 3)
            if self.seconds > 0
            else None,
            "pixels_per_class": dict(zip(self.classes, self.class_pixels, strict=False)),
            "device": self.device,
            "precision": self.precision,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "kept_annotations": list(self.kept_annotations),
            "ranking": self.ranking,
            "per_image": list(self.images),
        }


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    path: Path
    id: str  # POSIX path relative to where it was found, without suffix


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def collect_inputs(inputs: Sequence[Path], output: Path) -> list[_Input]:
    """Image files named or found (recursively) in folders, minus the output folder.

    Two images with the same id (``a.jpg`` and ``a.png``) would write the same mask,
    so they are refused up front.
    """
    found: list[_Input] = []
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            for path in sorted(given.rglob("*")):
                if (
                    path.suffix.lower() in IMAGE_SUFFIXES
                    and path.is_file()
                    and not _inside(path, output)
                    and not any(part.startswith(".") for part in path.relative_to(given).parts)
                ):
                    found.append(_Input(path, path.relative_to(given).with_suffix("").as_posix()))
        elif given.is_file():
            found.append(_Input(given, given.stem))
        else:
            raise OptionError(f"{given}: no such image file or folder")
    by_id: dict[str, list[Path]] = {}
    for item in found:
        by_id.setdefault(item.id, []).append(item.path)
    clashes = [" and ".join(map(str, paths)) for paths in by_id.values() if len(paths) > 1]
    if clashes:
        raise OptionError(
            f"images would share an output name: {short_list(clashes)}; "
            "predict them into separate -o folders"
        )
    if not found:
        raise OptionError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {short_list([str(p) for p in inputs])}"
        )
    return found


def read_image(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[PIL.Image.Image, NDArray[Any]]:
    """The image in labelme's display frame (EXIF orientation applied exactly as
    ``convert`` does) and its pixels ``[H, W, C]`` (uint8, or uint16 for 16-bit).

    Pillow's decompression-bomb limit is lifted; an image over ``max_pixels`` is refused
    in one line naming it (``--max-pixels`` raises the limit)."""
    annotation = Annotation(path.with_suffix(".json"), (), path.name, None, None, None)
    try:
        image = load_image(
            annotation,
            max_pixels=max_pixels,
            too_large_hint="cut it into smaller images, or raise --max-pixels if it is genuine",
        ).image
    except AnnotationError as error:
        # load_image names the (here imaginary) JSON and then the image; name the image.
        detail = str(error).removeprefix(f"{annotation.path}: ").replace(f" {path}", "")
        raise DatasetError(f"{path}: {detail}; skipped") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image)
        if array.dtype != np.uint16:
            array = np.clip(array, 0, 65535).astype(np.uint16)
        return image, array[:, :, None]
    # np.asarray copies the pixels once; convert() first only where the mode differs.
    if image.mode == "L":
        return image, np.asarray(image)[:, :, None]
    if image.mode in ("1", "LA"):
        return image, np.asarray(image.convert("L"))[:, :, None]
    return image, np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def match_channels(
    pixels: NDArray[Any], channels: int, path: Path
) -> tuple[NDArray[Any], str | None]:
    """Pixels with the model's channel count, and a warning when they were converted."""
    have = pixels.shape[2]
    if have == channels:
        return pixels, None
    if have == 1 and channels == 3:
        return np.repeat(
            pixels, 3, axis=2
        ), f"{path}: grayscale image repeated to RGB for the model"
    if have == 3 and channels == 1:
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        gray = np.empty((*pixels.shape[:2], 1), pixels.dtype)
        for top in range(0, pixels.shape[0], 256):  # row blocks: no image-sized float32
            block = pixels[top : top + 256].astype(np.float32) @ weights
            gray[top : top + 256, :, 0] = np.round(block)
        return gray, f"{path}: RGB image converted to grayscale for the model"
    raise DatasetError(
        f"{path}: the image has {have} channel(s) but the model takes {channels}; "
        "only grayscale ↔ RGB can be converted"
    )


# -- checkpoint --------------------------------------------------------------------------


def checkpoint_for(run: Path, name: str = "best") -> Path:
    """The checkpoint ``run`` names: a run folder's ``checkpoints/<name>``, or a file."""
    run = Path(run)
    if run.is_dir():
        tensors, _ = checkpoint_paths(run / "checkpoints" / name)
        if not tensors.is_file():
            raise CheckpointError(
                f"{run}: no checkpoints/{name}.safetensors; is it a segkit run folder?"
            )
        return tensors
    tensors, _ = checkpoint_paths(run)
    if not tensors.is_file():
        raise CheckpointError(f"{run}: not a segkit checkpoint (no {tensors.name} beside it)")
    return tensors


# -- uncertainty -------------------------------------------------------------------------


def uncertainty(probs: Tensor) -> tuple[float, float]:
    """``(mean entropy / log K, share of pixels whose top probability < LOW_CONFIDENCE)``
    of ``[K, H, W]`` probabilities (a ``[1, H, W]`` sigmoid map counts as two classes)."""
    if probs.shape[0] == 1:
        probs = torch.cat([1 - probs, probs])
    entropy_sum, low_count = uncertainty_sums(probs)
    pixels = probs.shape[1] * probs.shape[2]
    return entropy_sum / math.log(probs.shape[0]) / pixels, low_count / pixels


def uncertainty_sums(probs: Tensor) -> tuple[float, float]:
    """Summed entropy (nats) and the count of low-confidence pixels of ``[K, h, w]``
    probabilities (K ≥ 2): what :func:`uncertainty` averages, summable over stripes."""
    entropy_sum = low_count = 0.0
    # Row blocks keep the temporaries small on a large image.
    for block in probs.split(256, dim=1):
        entropy_sum += float(-(block * block.clamp_min(1e-12).log()).sum())
        low_count += float((block.max(0).values < LOW_CONFIDENCE).sum())
    return entropy_sum, low_count


class StripeOutputs:
    """What predict keeps of each stripe of probabilities (:func:`predict_stripes`): the
    uint8 class mask, the uncertainty sums and, given a file, the float16 ``[K, H, W]``
    ``.npy`` written in place row by row, so no ``K × H × W`` array is ever held."""

    def __init__(self, height: int, width: int, probs_file: IO[bytes] | None = None) -> None:
        self.mask = np.zeros((height, width), np.uint8)
        self.entropy_sum = self.low_count = 0.0
        self.classes = 0
        self._file = probs_file
        self._data_start = 0

    def __call__(self, top: int, probs: Tensor) -> None:
        if probs.shape[0] == 1:  # a sigmoid head: background and foreground
            probs = torch.cat([1 - probs, probs])
        rows = probs.shape[1]
        self.mask[top : top + rows] = class_argmax(probs).to("cpu", torch.uint8).numpy()
        entropy, low = uncertainty_sums(probs)
        self.entropy_sum += entropy
        self.low_count += low
        self.classes = probs.shape[0]
        if self._file is not None:
            self._write_rows(top, probs.to("cpu", torch.float16).numpy())

    def _write_rows(self, top: int, rows: NDArray[np.float16]) -> None:
        height, width = self.mask.shape
        if not self._data_start:
            header = {
                "descr": np.lib.format.dtype_to_descr(rows.dtype),
                "fortran_order": False,
                "shape": (rows.shape[0], height, width),
            }
            np.lib.format.write_array_header_1_0(self._file, header)
            self._data_start = self._file.tell()
        for k, plane in enumerate(rows):  # class k's rows sit at k·H·W + top·W (C order)
            self._file.seek(self._data_start + (k * height + top) * width * plane.itemsize)
            self._file.write(np.ascontiguousarray(plane).tobytes())

    def uncertainty(self) -> tuple[float, float]:
        """``(mean entropy / log K, low-confidence share)`` as :func:`uncertainty` gives."""
        pixels = self.mask.size
        return self.entropy_sum / math.log(self.classes) / pixels, self.low_count / pixels


def rank_rows(images: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranking rows, most uncertain first: by mean entropy, then low-confidence share."""
    ordered = sorted(
        (row for row in images if row.get("mean_entropy") is not None),
        key=lambda row: (-row["mean_entropy"], -row["low_confidence_share"], row["id"]),
    )
    return [
        {
            "rank": rank,
            "id": row["id"],
            "image": row["image"],
            "mean_entropy": round(row["mean_entropy"], 6),
            "low_confidence_share": round(row["low_confidence_share"], 6),
        }
        for rank, row in enumerate(ordered, start=1)
    ]


def ranking_csv(rows: Sequence[dict[str, Any]]) -> str:
    """``ranking.csv``'s text (no image name can run as a spreadsheet formula)."""
    return csv_text(["rank", "id", "image", "mean_entropy", "low_confidence_share"], rows)


def is_uncertain(mean_entropy: float, low_share: float) -> bool:
    """Whether an image gets the ``segkit_uncertain`` flag."""
    return mean_entropy >= UNCERTAIN_ENTROPY or low_share >= UNCERTAIN_SHARE


# -- labelme -----------------------------------------------------------------------------


def labelme_document(
    mask: NDArray[np.uint8],
    classes: Sequence[str],
    *,
    image_path: str,
    image_data: bytes | None,
    simplify: float,
    min_area: int,
    flags: dict[str, bool],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """A labelme JSON document (dict) of ``mask``'s regions as prediction polygons."""
    regions = mask_regions(mask, simplify=simplify, min_area=min_area)
    return {
        "version": LABELME_VERSION,
        "flags": dict(flags),
        "shapes": regions_to_shapes(regions, classes, flags={}),
        "imagePath": image_path,
        "imageData": None if image_data is None else base64.b64encode(image_data).decode("ascii"),
        "imageHeight": int(mask.shape[0]),
        "imageWidth": int(mask.shape[1]),
        "segkit": provenance,
    }


def _embedded_bytes(image: PIL.Image.Image, path: Path) -> bytes:
    """Image bytes for ``imageData``: labelme shows embedded bytes without EXIF rotation,
    so an image that needed turning is re-encoded (PNG) in its display frame."""
    data = path.read_bytes()
    with PIL.Image.open(io.BytesIO(data)) as raw:
        turned = raw.size != image.size or raw.getexif().get(0x0112, 1) != 1
    if not turned:
        return data
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- the stage ---------------------------------------------------------------------------


def _read_record(output: Path) -> dict[str, Any]:
    try:
        data = json.loads((output / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def _owned(output: Path, record: dict[str, Any]) -> tuple[set[str], dict[str, str]]:
    """Files earlier runs wrote (record and claim), and the hash of each JSON they wrote."""
    owned: set[str] = set()
    json_hashes: dict[str, str] = {}
    for entry in record.get("images", []) if isinstance(record.get("images"), list) else []:
        if not isinstance(entry, dict):
            continue
        owned.update(
            name
            for name in entry.get("files", [])
            if isinstance(name, str) and stays_inside(output, name)
        )
        if isinstance(entry.get("labelme"), str) and isinstance(entry.get("labelme_sha256"), str):
            json_hashes[entry["labelme"]] = entry["labelme_sha256"]
    if record:
        owned.add(RANKING_NAME)
    claim = read_claim(output, CLAIM_STAGE) or {}
    owned.update(
        name
        for name in claim.get("pending", [])
        if isinstance(name, str) and stays_inside(output, name)
    )
    return owned, json_hashes


def _files_for(item: _Input, options: PredictOptions) -> dict[str, str]:
    files = {"mask": f"masks/{item.id}.png", "overlay": f"overlays/{item.id}.jpg"}
    if options.save_probs:
        files["probs"] = f"probs/{item.id}.npy"
    if options.labelme:
        files["labelme"] = f"labelme/{item.id}.json"
    return files


def _person_made(output: Path, name: str, owned: set[str], hashes: dict[str, str]) -> bool:
    """A labelme JSON at ``name`` that segkit did not write, or a person edited since."""
    path = output / name
    if not path.is_file():
        return False
    if name not in owned:
        return True
    recorded = hashes.get(name)
    return recorded is not None and sha256_file(path) != recorded


def _up_to_date(
    output: Path, previous: dict[str, Any] | None, source_sha: str, key: dict[str, Any]
) -> bool:
    if not previous or previous.get("source_sha256") != source_sha or previous.get("key") != key:
        return False
    files = previous.get("files")
    return isinstance(files, list) and all((output / name).is_file() for name in files)


def predict(
    inputs: Sequence[Path] | Path,
    output: Path,
    options: PredictOptions,
    progress: Progress | None = None,
) -> PredictSummary:
    """Predict every image in ``inputs`` with ``options.run``'s model into ``output``."""
    output = Path(output)
    inputs = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    if output.exists() and not output.is_dir():
        raise OptionError(f"{output}: exists and is not a folder")
    for path in inputs:
        if path.is_dir():
            check_apart(output, {"input folder": path})
    items = collect_inputs(inputs, output)
    tensors = checkpoint_for(options.run, options.checkpoint)
    runtime = resolve_runtime(options.device, options.precision, "off")
    loaded = load_checkpoint(tensors, device=runtime.device)
    meta, model = loaded.meta, loaded.model
    channels = meta.model.in_channels
    if channels not in (1, 3):
        raise CheckpointError(
            f"{tensors}: the model takes {channels} input channels; predict reads grayscale "
            "or RGB images only"
        )
    classes = list(meta.classes)
    checkpoint_sha = meta.tensors_sha256 or sha256_file(tensors)
    key = {**options.output_key(), "checkpoint_sha256": checkpoint_sha}
    record = _read_record(output)
    previous = {
        entry["id"]: entry
        for entry in record.get("images", [])
        if isinstance(entry, dict) and isinstance(entry.get("id"), str)
    }
    provenance = {
        "predicted_by": f"segkit {__version__}",
        "checkpoint": str(tensors),
        "checkpoint_sha256": checkpoint_sha,
        "architecture": meta.model.name,
    }
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    notes: list[str] = []
    kept: list[str] = []
    class_pixels = np.zeros(max(len(classes), 2), np.int64)
    skipped = 0
    seconds = 0.0
    megapixels = 0.0
    with output_folder(output, subfolders=SUBFOLDERS):
        owned, json_hashes = _owned(output, record)
        planned = {name for item in items for name in _files_for(item, options).values()}
        if options.rank == "uncertainty":
            planned.add(RANKING_NAME)
        in_the_way = sorted(
            name
            for name in planned
            if (output / name).exists() and name not in owned and not name.startswith("labelme/")
        )
        if (output / RECORD_NAME).exists() and not record:
            in_the_way.append(RECORD_NAME)
        if in_the_way:
            raise DatasetError(
                f"{output}: {short_list(in_the_way)} not written by segkit; "
                "move them away or choose another -o"
            )
        # A person's labelme file must never be claimed: an interrupted run would
        # otherwise leave it listed as segkit's.
        persons = set()
        if not options.overwrite_annotations:
            persons = {
                name
                for name in planned
                if name.startswith("labelme/") and _person_made(output, name, owned, json_hashes)
            }
        write_claim(output, CLAIM_STAGE, pending=sorted((owned | planned) - persons))
        for done, item in enumerate(items):
            if progress is not None:
                progress(done, len(items))
            try:
                row, pixels, was_skipped, took = _predict_one(
                    item, output, options, key, previous.get(item.id), owned, json_hashes,
                    model=model, runtime=runtime, channels=channels, classes=classes,
                    normalization=meta.normalization, provenance=provenance, notes=notes,
                    kept=kept,
                )  # fmt: skip
            except (AnnotationError, DatasetError) as error:
                errors.append(str(error))
                continue
            except OSError as error:
                errors.append(f"{item.path}: {error.strerror or error}")
                continue
            rows.append(row)
            class_pixels[: len(pixels)] += np.asarray(pixels[: len(class_pixels)], np.int64)
            if was_skipped:
                skipped += 1
            else:
                seconds += took
                megapixels += row["height"] * row["width"] / 1e6
        if progress is not None:
            progress(len(items), len(items))
        ranking = rank_rows(rows) if options.rank == "uncertainty" else None
        if ranking is not None:
            atomic_write_bytes(output / RANKING_NAME, ranking_csv(ranking).encode())
        written = {name for row in rows for name in row["files"]}
        if ranking is not None:
            written.add(RANKING_NAME)
        # Files an earlier run wrote for images not in this one: gone, unless edited.
        for name in sorted(owned - written - {RECORD_NAME}):
            if name.startswith("labelme/") and _person_made(output, name, owned, json_hashes):
                continue
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (output / name).unlink()
        atomic_write_json(
            output / RECORD_NAME,
            {
                "format": FORMAT,
                "schema_version": SCHEMA_VERSION,
                "segkit_version": __version__,
                "command": list(options.command),
                "options": options.to_dict(),
                "checkpoint": provenance,
                "classes": classes,
                "images": rows,
                "errors": errors,
            },
        )
        drop_claim(output, CLAIM_STAGE)
    for note in notes:
        warnings.warn(note, SegkitNote, stacklevel=2)
    return PredictSummary(
        output=output,
        classes=classes,
        images=rows,
        skipped=skipped,
        seconds=seconds,
        megapixels=megapixels,
        class_pixels=[int(v) for v in class_pixels],
        errors=errors,
        warnings=notes,
        kept_annotations=kept,
        ranking=ranking,
        device=str(runtime.device),
        precision=runtime.precision,
    )


def _inference_options(options: PredictOptions, height: int, width: int) -> InferenceOptions:
    tile = options.tile
    if tile is None and max(height, width) > MAX_WHOLE_SIDE:
        tile = AUTO_TILE
    overlap = 0.0 if tile is None else min(options.overlap / tile, 0.95)
    return InferenceOptions(
        tile=tile, overlap=overlap, batch_size=options.batch_size, flip_tta=options.tta == "flip"
    )


def _predict_one(
    item: _Input,
    output: Path,
    options: PredictOptions,
    key: dict[str, Any],
    previous: dict[str, Any] | None,
    owned: set[str],
    json_hashes: dict[str, str],
    *,
    model: nn.Module,
    runtime: Runtime,
    channels: int,
    classes: list[str],
    normalization: dict[str, Any],
    provenance: dict[str, Any],
    notes: list[str],
    kept: list[str],
) -> tuple[dict[str, Any], list[int], bool, float]:
    source_sha = sha256_file(item.path)
    names = _files_for(item, options)
    json_name = names.get("labelme")
    blocked = (
        json_name is not None
        and not options.overwrite_annotations
        and _person_made(output, json_name, owned, json_hashes)
    )
    if blocked:
        assert json_name is not None
        kept.append(str(output / json_name))
        notes.append(
            f"{output / json_name}: a labelme file segkit did not write (or one edited since) "
            "was kept; pass --overwrite-annotations to replace it"
        )
        names.pop("labelme")
    if not options.force and previous and _up_to_date(output, previous, source_sha, key):
        row = dict(previous)
        if blocked:  # the JSON is a person's now: no longer ours
            row["files"] = [n for n in row["files"] if n != json_name]
            row.pop("labelme", None)
            row.pop("labelme_sha256", None)
        return row, list(previous.get("pixels_per_class", [])), True, 0.0
    start = time.perf_counter()
    # An image in a sub-folder writes masks/<sub>/...: a planted link there is refused.
    check_real_folders(output, sorted({Path(name).parent.as_posix() for name in names.values()}))
    with contextlib.ExitStack() as stack:
        # The probabilities go straight into their file, renamed into place on success.
        probs_file = (
            stack.enter_context(atomic_open(output / names["probs"])) if "probs" in names else None
        )
        image, mask, mean_entropy, low_share, settings = _infer(
            item.path, options, model=model, runtime=runtime, channels=channels,
            normalization=normalization, notes=notes, probs_file=probs_file,
        )  # fmt: skip
        row, files = _row_and_files(
            item, options, key, names, image, mask, mean_entropy, low_share, settings,
            classes=classes, source_sha=source_sha, provenance=provenance, output=output,
        )  # fmt: skip
        for name, data in files.items():
            target = output / name
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
    row["files"] = sorted([*files, *([names["probs"]] if probs_file else [])])
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row, row["pixels_per_class"], False, time.perf_counter() - start


def _infer(
    path: Path,
    options: PredictOptions,
    *,
    model: nn.Module,
    runtime: Runtime,
    channels: int,
    normalization: dict[str, Any],
    notes: list[str],
    probs_file: IO[bytes] | None,
) -> tuple[PIL.Image.Image, NDArray[np.uint8], float, float, InferenceOptions]:
    """Read one image and predict it stripe by stripe: (image, mask, uncertainty, settings)."""
    image, pixels = read_image(path, options.max_pixels)
    pixels, warning = match_channels(pixels, channels, path)
    if warning:
        notes.append(warning)
    height, width = pixels.shape[:2]
    settings = _inference_options(options, height, width)
    outputs = StripeOutputs(height, width, probs_file)
    with runtime.autocast():
        predict_stripes(model, pixels, settings, outputs, normalization=normalization)
    mean_entropy, low_share = outputs.uncertainty()
    return image, outputs.mask, mean_entropy, low_share, settings


def _row_and_files(
    item: _Input,
    options: PredictOptions,
    key: dict[str, Any],
    names: dict[str, str],
    image: PIL.Image.Image,
    mask: NDArray[np.uint8],
    mean_entropy: float,
    low_share: float,
    settings: InferenceOptions,
    *,
    classes: list[str],
    source_sha: str,
    provenance: dict[str, Any],
    output: Path,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The record row of one predicted image and the bytes of its files (but probs)."""
    height, width = mask.shape
    files: dict[str, bytes] = {
        names["mask"]: encode_palette_png(mask),
        names["overlay"]: _visualization(image, mask),
    }
    row: dict[str, Any] = {
        "id": item.id,
        "image": str(item.path),
        "source_sha256": source_sha,
        "key": key,
        "height": int(height),
        "width": int(width),
        "tile": settings.tile,
        "mean_entropy": mean_entropy,
        "low_confidence_share": low_share,
        "pixels_per_class": np.bincount(mask.ravel(), minlength=len(classes)).tolist(),
    }
    if "labelme" in names:
        json_path = output / names["labelme"]
        relative = Path(os.path.relpath(item.path.resolve(), json_path.parent.resolve()))
        flags = {"segkit_prediction": True}
        if options.rank == "uncertainty":
            flags[UNCERTAIN_FLAG] = is_uncertain(mean_entropy, low_share)
        document = labelme_document(
            mask,
            classes,
            image_path=relative.as_posix(),
            image_data=_embedded_bytes(image, item.path) if options.embed_image else None,
            simplify=options.simplify,
            min_area=options.min_area,
            flags=flags,
            provenance={
                **provenance,
                "mean_entropy": round(mean_entropy, 6),
                "low_confidence_share": round(low_share, 6),
            },
        )
        data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
        files[names["labelme"]] = data
        row["labelme"] = names["labelme"]
        row["labelme_sha256"] = sha256_bytes(data)
    return row, files
