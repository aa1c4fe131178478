"""Stage ``segkit weights``: class statistics, class weights and per-image weight maps.

The file shell around :mod:`segkit.weights`. It reads the ``SegmentationClass`` masks
of one split (``train`` by default; all images when the dataset has no split files),
counts pixels per class in worker processes, derives class weights with the chosen
scheme and writes, in the dataset folder:

- ``weights.json``: the statistics, the class weights (``class_weights[c]`` is the
  weight of class id ``c``), ``pos_weight`` for binary tasks, the parameters, and per
  image the input hashes that make re-runs incremental (see :func:`load_weights`);
- with ``border``: ``SegmentationWeights/<id>.npy``, one ``(H, W)`` float32 map
  ``w(x) = w_c(x) + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` per image of the split,
  0 on ignore pixels. float32, not float16: float16 keeps ~3 significant digits, so a
  weight above 2 would be stored more than 1e-3 off (7e-3 at w = 14), while the maps
  promise 1e-3 absolute. :func:`read_weight_map` also reads the float16 maps of
  earlier segkit versions; a ``border`` run rewrites them as float32;
- with ``viz``: ``SegmentationWeightsVisualization/<id>.png`` heat maps;
- the ``"weights"`` key of ``segkit.json`` when the dataset has a manifest (a hand-made
  VOC folder gets ``weights.json`` only).

Without class names (no ``segkit.json``, ``class_names.txt`` or ``labels.txt``) the
classes are the ids ``0..max`` found in the class masks of the whole dataset, every
split, so that every split gets the same number of class weights; classes without
pixels in the chosen split get the zero-pixel weight (see :mod:`segkit.weights`).

Objects for the border term come from ``SegmentationObject/<id>.png`` when it exists,
otherwise from the 8-connected components of each class in the class mask.

Every mask is read and checked before anything is written, so bad input leaves the
folder as it was. Re-runs skip masks and maps whose input bytes (SHA-256) and options
are unchanged; a change of the class weights (new training images, another scheme)
rewrites every map, since each map holds the final per-pixel weight. Maps are only
ever for the images of the chosen split. A run without ``border`` keeps the maps of an
earlier run while they are still up to date (same masks, class weights and border
options) and removes them once they are not, so a map on disk is never stale; maps of
images that left the split are removed too. Heat maps are only touched with ``viz``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from numpy.typing import NDArray

from segkit import __version__
from segkit._compat import add_note
from segkit._io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_with,
    io_error_line,
    sha256_file,
    write_error_reason,
)
from segkit._text import short_list
from segkit.dataset import Dataset, Sample, open_dataset
from segkit.errors import DatasetError, OptionError, SegkitError
from segkit.manifest import update_manifest
from segkit.ownership import drop_claim, note_foreign, output_folder, read_claim, write_claim
from segkit.parallel import ProgressCallback, parallel_map
from segkit.voc import (
    CLASS_DIR,
    IGNORE_INDEX,
    MANIFEST_NAME,
    OBJECT_DIR,
    SPLITS_DIR,
    WEIGHTS_DIR,
    read_class_mask,
    read_image_size,
    read_mask,
)
from segkit.weights import (
    DEFAULT_BETA,
    DEFAULT_SIGMA,
    DEFAULT_TOLERANCE,
    DEFAULT_W0,
    ClassStats,
    border_cutoff,
    check_scheme,
    normalize_class_weights,
    objects_from_classes,
    objects_from_instances,
    out_of_range_ids,
    pos_weight,
    raw_class_weights,
    stats_from_histogram,
    weight_map,
)

WEIGHTS_FILE = "weights.json"
WEIGHTS_VIZ_DIR = "SegmentationWeightsVisualization"
SCHEMA_VERSION = 1
#: ``--split`` value that means every image with a class mask.
ALL_IMAGES = "all"
#: Marks a maps folder as written by this stage, so its stale files may be removed.
_MARKER = ".segkit-weights"
#: The claim (in the dataset root) that lists the maps a stopped run finished.
_STAGE = "weights"
#: Bump when the content of a map changes for the same inputs and options.
_MAP_VERSION = 1
#: How maps are stored (see the module docstring for why not float16).
_MAP_DTYPE = "float32"
_BORDER_ON = ("background", "all")


@dataclass(frozen=True)
class WeightsOptions:
    """Options of :func:`compute_weights` (the CLI flags one to one), checked when built.

    ``split=None`` means ``train`` when the dataset has split files, else every image.
    ``workers=None`` uses every core.
    """

    split: str | None = None
    scheme: str = "median-frequency"
    beta: float = DEFAULT_BETA
    border: bool = False
    w0: float = DEFAULT_W0
    sigma: float = DEFAULT_SIGMA
    border_on: str = "background"
    viz: bool = False
    force: bool = False
    workers: int | None = None
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        _check_options(self)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values."""
        return asdict(self)


@dataclass(frozen=True)
class ClassSummary:
    """One row of the statistics table."""

    id: int
    name: str
    pixels: int
    images: int
    frequency: float
    weight: float
    raw_weight: float | None


@dataclass(frozen=True)
class WeightsSummary:
    """What :func:`compute_weights` computed and wrote."""

    root: Path
    weights_file: Path
    split: str | None
    num_images: int
    scheme: str
    beta: float | None
    classes: tuple[ClassSummary, ...]
    pos_weight: float | None
    labelled_pixels: int
    ignored_pixels: int
    maps_dir: Path | None
    maps_written: int
    maps_unchanged: int
    maps_removed: int
    viz_written: int
    objects_from_instances: int
    objects_from_components: int
    masks_reused: int
    manifest_updated: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def class_weights(self) -> list[float]:
        """Weights in class-id order."""
        return [row.weight for row in self.classes]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``--json``)."""
        data = asdict(self)
        data["root"] = str(self.root)
        data["weights_file"] = str(self.weights_file)
        data["maps_dir"] = None if self.maps_dir is None else str(self.maps_dir)
        data["classes"] = [asdict(row) for row in self.classes]
        data["class_weights"] = self.class_weights
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class WeightsFile:
    """The parts of ``weights.json`` that training reads (see :func:`load_weights`)."""

    path: Path
    class_weights: tuple[float, ...]
    pos_weight: float | None
    scheme: str
    split: str | None
    classes: tuple[str, ...]
    maps: dict[str, Path]
    border: dict[str, Any] | None
    #: The ids of the images counted (``None`` in a file that does not list them).
    images: frozenset[str] | None = None


# -- public readers for later stages ---------------------------------------------------


def weights_path(root: Path) -> Path:
    """Where ``weights.json`` of the dataset at ``root`` lives."""
    return Path(root) / WEIGHTS_FILE


def weight_map_path(root: Path, sample_id: str) -> Path:
    """Where the weight map of ``sample_id`` is written: ``SegmentationWeights/<id>.npy``."""
    return Path(root) / WEIGHTS_DIR / f"{sample_id}.npy"


def load_weights(root: Path) -> WeightsFile:
    """Read ``weights.json`` of the dataset at ``root``.

    Raises :class:`DatasetError` naming the file when it is missing or malformed.
    """
    path = weights_path(root)
    if not path.is_file():
        raise DatasetError(f"{path}: not found; run `segkit weights {root}` first")
    data = _read_json(path)
    if data is None:
        raise DatasetError(f"{path}: not valid JSON; run `segkit weights {root} --force`")
    try:
        weights = tuple(float(w) for w in data["class_weights"])
        classes = tuple(str(c["name"]) for c in data["classes"])
        maps = _recorded_maps(path, data.get("maps"))
        pos = data.get("pos_weight")
        return WeightsFile(
            path=path,
            class_weights=weights,
            pos_weight=None if pos is None else float(pos),
            scheme=str(data["scheme"]),
            split=data.get("split"),
            classes=classes,
            maps=maps,
            border=data.get("border"),
            images=frozenset(data["images"]) if isinstance(data.get("images"), dict) else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(
            f"{path}: malformed ({error!r}); run `segkit weights --force`"
        ) from error


def _recorded_maps(path: Path, raw: Any) -> dict[str, Path]:
    """``maps`` of weights.json as paths inside the dataset; a hand-edited entry that
    leaves it (absolute, ``..``) is refused rather than followed."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise TypeError(f"'maps' must be an object, got {type(raw).__name__}")
    maps = {}
    for key, value in raw.items():
        relative = Path(str(value))
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"map {value!r} of {key!r} lies outside the dataset")
        maps[str(key)] = path.parent / relative
    return maps


def read_weight_map(path: Path) -> NDArray[np.float32]:
    """Load one ``.npy`` weight map as float32 ``(H, W)``.

    Maps are stored as float32; the float16 maps of earlier versions load too.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read weight map ({error})") from error
    if array.ndim != 2:
        raise DatasetError(f"{path}: weight map must be 2-D, got shape {array.shape}")
    return array.astype(np.float32, copy=False)


# -- workers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _ScanTask:
    id: str
    class_mask: str
    object_mask: str | None
    check_objects: bool
    known_class_sha: str | None
    known_histogram: dict[str, int] | None
    known_object_sha: str | None
    known_shape: tuple[int, int] | None


@dataclass(frozen=True)
class _Scan:
    id: str
    error: str | None = None
    class_sha: str = ""
    object_sha: str | None = None
    histogram: dict[int, int] = field(default_factory=dict)
    shape: tuple[int, int] = (0, 0)
    reused: bool = False


def _scan_mask(task: _ScanTask) -> _Scan:
    """Hash and count one class mask (reusing known counts for identical bytes); check
    its instance mask when the border term will need it."""
    try:
        class_sha = sha256_file(Path(task.class_mask))
        histogram = None
        if task.known_histogram is not None and class_sha == task.known_class_sha:
            histogram = _known_histogram(task.known_histogram)
        reused = histogram is not None
        shape = task.known_shape if reused else None
        if histogram is None:
            mask = read_class_mask(Path(task.class_mask))
            counts = np.bincount(mask.ravel())
            histogram = {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
            shape = (int(mask.shape[0]), int(mask.shape[1]))
        if shape is None:
            shape = read_image_size(Path(task.class_mask))
        object_sha = None
        if task.check_objects and task.object_mask is not None:
            object_sha = sha256_file(Path(task.object_mask))
            if not (reused and object_sha == task.known_object_sha):
                objects = read_mask(Path(task.object_mask), "instance")
                if objects.shape != shape:
                    return _Scan(
                        task.id,
                        error=f"{task.object_mask}: size {objects.shape[1]}x{objects.shape[0]} "
                        f"differs from the class mask's {shape[1]}x{shape[0]}",
                    )
    except OSError as error:
        return _Scan(task.id, error=f"{error.filename}: cannot read ({error.strerror})")
    except DatasetError as error:
        return _Scan(task.id, error=str(error))
    if shape[0] * shape[1] == 0:
        return _Scan(task.id, error=f"{task.class_mask}: empty mask (0 pixels)")
    return _Scan(task.id, None, class_sha, object_sha, histogram, shape, reused)


@dataclass(frozen=True)
class _Ids:
    id: str
    error: str | None = None
    ids: tuple[int, ...] = ()


def _mask_ids(task: tuple[str, str]) -> _Ids:
    """The ids in one class mask (no hashing, no instance mask): for the class count."""
    sample_id, path = task
    try:
        counts = np.bincount(read_class_mask(Path(path)).ravel())
    except OSError as error:
        return _Ids(sample_id, error=f"{error.filename}: cannot read ({error.strerror})")
    except DatasetError as error:
        return _Ids(sample_id, error=str(error))
    return _Ids(sample_id, None, tuple(int(v) for v in np.flatnonzero(counts)))


def _known_histogram(known: Mapping[str, Any]) -> dict[int, int] | None:
    """Counts recorded by an earlier run, or ``None`` when the record is not usable."""
    try:
        histogram = {int(k): int(v) for k, v in known.items()}
    except (TypeError, ValueError):
        return None
    if any(k < 0 or v < 0 for k, v in histogram.items()):
        return None
    return {k: v for k, v in histogram.items() if v > 0}


@dataclass(frozen=True)
class _MapTask:
    id: str
    class_mask: str
    object_mask: str | None
    weights: tuple[float, ...]
    border: bool
    w0: float
    sigma: float
    border_on: str
    tolerance: float
    map_path: str | None
    viz_path: str | None
    viz_max: float


@dataclass(frozen=True)
class _MapResult:
    id: str
    map_written: bool
    viz_written: bool
    #: ``cannot write <file> (<reason>)`` when the disk refused a write.
    error: str | None = None


def _make_map(task: _MapTask) -> _MapResult:
    class_mask = read_class_mask(Path(task.class_mask))
    objects = ignore = None
    if task.border:
        if task.object_mask is not None:
            objects, ignore = objects_from_instances(read_mask(Path(task.object_mask), "instance"))
        else:
            objects = objects_from_classes(class_mask)
    weights = np.asarray(task.weights, dtype=np.float64)
    result = weight_map(
        class_mask,
        weights,
        objects,
        w0=task.w0,
        sigma=task.sigma,
        border_on=task.border_on,
        ignore=ignore,
        tolerance=task.tolerance,
    )
    try:
        if task.map_path is not None:
            stored = result.astype(_MAP_DTYPE)
            atomic_write_with(Path(task.map_path), lambda handle: np.save(handle, stored))
        if task.viz_path is not None:
            atomic_write_bytes(Path(task.viz_path), heat_map_png(result, task.viz_max))
    except OSError as error:
        return _MapResult(task.id, False, False, write_error_reason(error))
    return _MapResult(task.id, task.map_path is not None, task.viz_path is not None)


# -- visualisation -----------------------------------------------------------------------

# Anchor colours of the heat map, low to high: black, violet, red, orange, pale yellow.
_HEAT_ANCHORS = np.array(
    [[0, 0, 0], [70, 20, 120], [200, 40, 70], [250, 150, 30], [255, 250, 210]], dtype=np.float64
)


def _heat_lut() -> NDArray[np.uint8]:
    positions = np.linspace(0.0, 1.0, len(_HEAT_ANCHORS))
    levels = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(levels, positions, _HEAT_ANCHORS[:, c]) for c in range(3)]
    return np.round(np.stack(channels, axis=1)).astype(np.uint8)


_HEAT_LUT = _heat_lut()


def heat_map_png(weights: NDArray[np.floating], vmax: float) -> bytes:
    """An RGB PNG of ``weights`` on a black-to-yellow scale from 0 to ``vmax``."""
    scale = 255.0 / vmax if vmax > 0 else 0.0
    index = np.clip(np.asarray(weights, dtype=np.float32) * scale, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(_HEAT_LUT[index], mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


# -- the stage -------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _check_options(options: WeightsOptions) -> None:
    check_scheme(options.scheme, beta=options.beta)
    if options.border_on not in _BORDER_ON:
        raise OptionError(
            f"--border-on must be one of {', '.join(_BORDER_ON)}, got {options.border_on!r}"
        )
    border_cutoff(options.w0, options.sigma, options.tolerance)  # raises on bad values
    if options.workers is not None and options.workers < 1:
        raise OptionError(f"--workers must be at least 1, got {options.workers}")


def _choose_samples(
    dataset: Dataset, split: str | None
) -> tuple[str | None, list[Sample], list[str]]:
    """The split name used (``None`` = all images), its samples, and notes."""
    notes: list[str] = []
    with_masks = [s for s in dataset.samples if s.class_mask is not None]
    split_dir = dataset.root / SPLITS_DIR
    has_splits = split_dir.is_dir() and any(split_dir.glob("*.txt"))
    if (split is None and not has_splits) or split == ALL_IMAGES:
        if not with_masks:
            raise DatasetError(
                f"{dataset.root / CLASS_DIR}: no class masks; run `segkit convert` first"
            )
        if split is None:
            notes.append(
                f"no split files in {SPLITS_DIR}/; used all {len(with_masks)} images "
                "(run `segkit split` to keep validation images out of the statistics)"
            )
        skipped = len(dataset.samples) - len(with_masks)
        if skipped:
            notes.append(f"{skipped} image(s) without a class mask skipped")
        return None, with_masks, notes
    name = split or "train"
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise OptionError(f"--split takes a split name such as train or val, got {name!r}")
    ids = dataset.read_split(name)
    if not ids:
        raise DatasetError(f"{dataset.split_file(name)}: split {name!r} is empty")
    by_id = {s.id: s for s in dataset.samples}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise DatasetError(
            f"{dataset.split_file(name)}: {len(unknown)} id(s) not in the dataset: {short_list(unknown)}"
        )
    missing = [i for i in ids if by_id[i].class_mask is None]
    if missing:
        raise DatasetError(
            f"{dataset.root / CLASS_DIR}: no class mask for {len(missing)} image(s) of split "
            f"{name!r}: {short_list(missing)}"
        )
    return name, [by_id[i] for i in dict.fromkeys(ids)], notes


def _fail(problems: Sequence[str], total: int) -> DatasetError:
    return DatasetError(
        f"{len(problems)} of {total} mask(s) cannot be used, nothing written: "
        f"{short_list(problems, 3, sep='; ')}"
    )


def _known_records(
    dataset: Dataset, previous: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Per image: hashes and counts from the previous weights.json, else from the manifest."""
    known: dict[str, dict[str, Any]] = {}
    for entry in (dataset.manifest or {}).get("samples", []):
        if isinstance(entry.get("class_pixels"), dict) and isinstance(
            entry.get("class_mask_sha256"), str
        ):
            known[entry["id"]] = {
                "class_mask_sha256": entry["class_mask_sha256"],
                "histogram": entry["class_pixels"],
            }
    images = (previous or {}).get("images")
    if isinstance(images, dict):
        for sample_id, record in images.items():
            if isinstance(record, dict) and isinstance(record.get("histogram"), dict):
                known[sample_id] = record
    return known


def _map_key(scan: _Scan, weights: Sequence[float], options: WeightsOptions) -> str:
    payload = {
        "version": _MAP_VERSION,
        "class": scan.class_sha,
        "object": scan.object_sha,
        "weights": [float(w) for w in weights],
        "border": options.border,
        "w0": options.w0 if options.border else None,
        "sigma": options.sigma if options.border else None,
        "on": options.border_on if options.border else None,
        "tolerance": options.tolerance if options.border else None,
        "dtype": _MAP_DTYPE,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _check_owned(folder: Path, force: bool) -> None:
    """Refuse to write into a non-empty folder this stage did not create (unless force)."""
    if not folder.is_dir() or (folder / _MARKER).exists() or force:
        return
    if any(path.name != _MARKER for path in folder.iterdir()):
        raise DatasetError(
            f"{folder}: exists and was not written by `segkit weights`; remove it or pass --force"
        )


def _claim(folder: Path, planned: Sequence[str]) -> None:
    """Mark ``folder`` as this stage's before the first map; in a folder it did not mark,
    files at the names it is about to write are the user's, and stop the run."""
    if not (folder / _MARKER).exists():
        taken = [name for name in planned if (folder / name).exists()]
        if taken:
            raise DatasetError(
                f"{folder}: {len(taken)} file(s) segkit did not write have the names of the "
                f"maps it would write: {short_list(sorted(taken))}; move them away "
                "(segkit never replaces files it did not write, not even with --force)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / _MARKER
    if not marker.exists():
        atomic_write_bytes(marker, b"written by segkit weights; stale files here are removed\n")


def _recorded_files(recorded: Mapping[str, Any] | None, folder: str, suffix: str) -> set[str]:
    """Names of the files in ``folder`` an earlier ``weights.json`` lists as written."""
    images = (recorded or {}).get("images")
    names = set()
    for entry in (images if isinstance(images, dict) else {}).values():
        for key in ("map", "viz"):
            value = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(value, str) and value.startswith(f"{folder}/"):
                names.add(value[len(folder) + 1 :])
    maps = (recorded or {}).get("maps")
    for value in (maps if isinstance(maps, dict) else {}).values():
        if isinstance(value, str) and value.startswith(f"{folder}/"):
            names.add(value[len(folder) + 1 :])
    return {name for name in names if name.endswith(suffix) and "/" not in name}


def _remove_stale(
    root: Path, folder: str, keep: set[str], suffix: str, recorded: Mapping[str, Any] | None
) -> int:
    """Delete the files of ``folder`` an earlier run recorded and this run no longer
    writes; any other file there is the user's: kept, and noted."""
    path = root / folder
    if not (path / _MARKER).exists():
        return 0
    ours = _recorded_files(recorded, folder, suffix)
    removed = 0
    foreign = []
    for file in sorted(path.glob(f"*{suffix}")):
        if file.stem in keep:
            continue
        if file.name in ours:
            file.unlink(missing_ok=True)
            removed += 1
        else:
            foreign.append(file.name)
    note_foreign(path, foreign, "not listed in weights.json")
    return removed


def _with_finished_maps(
    recorded: dict[str, Any] | None, claim: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """``weights.json``'s record with the per-image entries of maps an interrupted run
    finished (as listed in its claim) laid over it."""
    finished = (claim or {}).get("finished")
    if not isinstance(finished, dict) or not finished:
        return recorded
    merged = dict(recorded or {})
    old = merged.get("images")
    images = dict(old) if isinstance(old, dict) else {}
    for sample_id, entry in finished.items():
        if isinstance(entry, dict):
            base = images.get(sample_id)
            images[sample_id] = {**(base if isinstance(base, dict) else {}), **entry}
    merged["images"] = images
    return merged


def _claim_finished(
    root: Path,
    plan: _MapPlan,
    results: Sequence[_MapResult | None],
) -> int:
    """Record in the stage's claim the maps this stopped run wrote (with their keys), so
    the next run skips them; returns how many there are."""
    earlier = (read_claim(root, _STAGE) or {}).get("finished")
    finished = dict(earlier) if isinstance(earlier, dict) else {}
    count = 0
    for task, result in zip(plan.tasks, results, strict=True):
        if result is None or result.error:
            continue
        count += 1
        entry: dict[str, Any] = {}
        if result.map_written:
            entry.update(map=plan.maps[task.id], map_key=plan.keys[task.id])
        if result.viz_written:
            entry.update(viz=f"{WEIGHTS_VIZ_DIR}/{task.id}.png", viz_key=plan.keys[task.id])
        before = finished.get(task.id)
        finished[task.id] = {**(before if isinstance(before, dict) else {}), **entry}
    with contextlib.suppress(DatasetError):  # a full disk: the next run redoes them
        write_claim(root, _STAGE, finished=finished)
    return count


def _offset(progress: ProgressCallback | None, offset: int, total: int) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda done, _total: progress(offset + done, total)


def _scan_all(
    samples: Sequence[Sample],
    known: Mapping[str, Mapping[str, Any]],
    options: WeightsOptions,
    progress: ProgressCallback | None,
) -> list[_Scan]:
    tasks = []
    for sample in samples:
        record = known.get(sample.id, {})
        shape = record.get("shape")
        tasks.append(
            _ScanTask(
                id=sample.id,
                class_mask=str(sample.class_mask),
                object_mask=None if sample.object_mask is None else str(sample.object_mask),
                check_objects=options.border,
                known_class_sha=record.get("class_mask_sha256"),
                known_histogram=record.get("histogram"),
                known_object_sha=record.get("object_mask_sha256"),
                known_shape=tuple(shape) if isinstance(shape, list) and len(shape) == 2 else None,
            )
        )
    return parallel_map(_scan_mask, tasks, workers=options.workers, progress=progress)


def _other_masks(dataset: Dataset, samples: Sequence[Sample]) -> list[Sample]:
    """The samples with a class mask outside ``samples`` whose ids fix the class count
    (none when the dataset names its classes)."""
    if dataset.classes:
        return []
    chosen = {sample.id for sample in samples}
    return [s for s in dataset.samples if s.class_mask is not None and s.id not in chosen]


def _scan_ids(
    others: Sequence[Sample], options: WeightsOptions, progress: ProgressCallback | None
) -> list[_Ids]:
    tasks = [(sample.id, str(sample.class_mask)) for sample in others]
    return parallel_map(_mask_ids, tasks, workers=options.workers, progress=progress)


def _class_names(
    dataset: Dataset, scans: Sequence[_Scan], others: Sequence[_Ids], notes: list[str]
) -> list[str]:
    """The class names, or without names the ids ``0..max`` over every mask of the dataset."""
    if dataset.classes:
        return list(dataset.classes)
    # Unreadable masks are reported by _check_scans.
    found = [v for scan in scans for v in scan.histogram]
    found += [v for scan in others for v in scan.ids]
    top = max((v for v in found if v < IGNORE_INDEX), default=0)
    notes.append(
        "no class names (segkit.json, class_names.txt or labels.txt); "
        f"classes are the ids 0..{top} found in the class masks of the whole dataset"
    )
    return [str(i) for i in range(top + 1)]


def _histogram(scan: _Scan) -> NDArray[np.int64]:
    histogram = np.zeros(max(256, max(scan.histogram, default=0) + 1), dtype=np.int64)
    for value, count in scan.histogram.items():
        histogram[value] = count
    return histogram


def _check_scans(
    samples: Sequence[Sample],
    scans: Sequence[_Scan],
    num_classes: int,
    others: Sequence[_Ids] = (),
) -> None:
    """Raise one line naming every mask that cannot be used, in sample order (the masks
    read only for the class count last)."""
    problems = []
    for sample, scan in zip(samples, scans, strict=True):
        if scan.error:
            problems.append(scan.error)
            continue
        ids = out_of_range_ids(_histogram(scan), num_classes)
        if ids:
            problems.append(
                f"{sample.class_mask}: class id(s) {short_list([str(i) for i in ids])} out of range "
                f"0..{num_classes - 1} ({IGNORE_INDEX} = ignore)"
            )
    problems += [scan.error for scan in others if scan.error]
    if problems:
        raise _fail(problems, len(scans) + len(others))


@dataclass
class _MapPlan:
    tasks: list[_MapTask]
    keys: dict[str, str]
    maps: dict[str, str]
    unchanged: int


def _plan_maps(
    root: Path,
    samples: Sequence[Sample],
    scans: Sequence[_Scan],
    weights: NDArray[np.float64],
    options: WeightsOptions,
    previous: Mapping[str, Any] | None,
) -> _MapPlan:
    """Which maps and heat maps to (re)write; the rest are up to date."""
    peak = float(weights.max()) + (options.w0 if options.border else 0.0)
    plan = _MapPlan([], {}, {}, 0)
    if not (options.border or options.viz):
        return plan
    old_images = (previous or {}).get("images")
    old_images = old_images if isinstance(old_images, dict) else {}
    weight_list = [float(w) for w in weights]
    for sample, scan in zip(samples, scans, strict=True):
        key = _map_key(scan, weight_list, options)
        plan.keys[sample.id] = key
        old = old_images.get(sample.id)
        old = old if isinstance(old, dict) else {}
        map_file = weight_map_path(root, sample.id)
        viz_file = root / WEIGHTS_VIZ_DIR / f"{sample.id}.png"
        if options.border:
            plan.maps[sample.id] = f"{WEIGHTS_DIR}/{sample.id}.npy"
        need_map = options.border and not (old.get("map_key") == key and map_file.is_file())
        need_viz = options.viz and not (old.get("viz_key") == key and viz_file.is_file())
        if options.border and not need_map:
            plan.unchanged += 1
        if need_map or need_viz:
            plan.tasks.append(
                _MapTask(
                    id=sample.id,
                    class_mask=str(sample.class_mask),
                    object_mask=None if sample.object_mask is None else str(sample.object_mask),
                    weights=tuple(weight_list),
                    border=options.border,
                    w0=options.w0,
                    sigma=options.sigma,
                    border_on=options.border_on,
                    tolerance=options.tolerance,
                    map_path=str(map_file) if need_map else None,
                    viz_path=str(viz_file) if need_viz else None,
                    viz_max=peak,
                )
            )
    return plan


def _border_record(options: WeightsOptions) -> dict[str, Any] | None:
    if not options.border:
        return None
    return {
        "w0": options.w0,
        "sigma": options.sigma,
        "on": options.border_on,
        "tolerance": options.tolerance,
        "cutoff_px": border_cutoff(options.w0, options.sigma, options.tolerance),
        "dir": WEIGHTS_DIR,
        "dtype": _MAP_DTYPE,
        "ignore_weight": 0.0,
    }


def _image_records(
    root: Path,
    samples: Sequence[Sample],
    scans: Sequence[_Scan],
    plan: _MapPlan,
    options: WeightsOptions,
) -> dict[str, dict[str, Any]]:
    """Per image: what a re-run needs to skip unchanged work."""
    records = {}
    for sample, scan in zip(samples, scans, strict=True):
        entry: dict[str, Any] = {
            "class_mask": Path(str(sample.class_mask)).relative_to(root).as_posix(),
            "class_mask_sha256": scan.class_sha,
            "shape": list(scan.shape),
            "histogram": {str(k): v for k, v in sorted(scan.histogram.items())},
        }
        if options.border:
            entry["object_mask_sha256"] = scan.object_sha
            entry["objects"] = "instances" if sample.object_mask is not None else "components"
            entry["map"] = plan.maps[sample.id]
            entry["map_key"] = plan.keys[sample.id]
        if options.viz:
            entry["viz"] = f"{WEIGHTS_VIZ_DIR}/{sample.id}.png"
            entry["viz_key"] = plan.keys[sample.id]
        records[sample.id] = entry
    return records


def _kept_border(
    previous: Mapping[str, Any] | None, options: WeightsOptions, maps_dir: Path
) -> WeightsOptions | None:
    """The options of the maps a run without ``border`` may keep (``None``: nothing to keep)."""
    if options.border or previous is None or not (maps_dir / _MARKER).exists():
        return None
    record = previous.get("border")
    if not isinstance(record, dict):
        return None
    try:
        kept = replace(
            options,
            border=True,
            w0=float(record["w0"]),
            sigma=float(record["sigma"]),
            border_on=str(record["on"]),
            tolerance=float(record["tolerance"]),
        )
        _check_options(kept)
    except (KeyError, TypeError, ValueError, SegkitError):
        return None
    return kept


def compute_weights(
    root: Path | str,
    options: WeightsOptions | None = None,
    progress: ProgressCallback | None = None,
    **fields: Any,
) -> WeightsSummary:
    """Run the stage on the dataset at ``root`` (see the module docstring); never prints.

    ``fields`` are :class:`WeightsOptions` fields, a shorthand for building the options.
    ``progress(done, total)`` is called as masks are counted and maps written. The
    dataset is locked while the stage runs (one writer per folder); a failed write is
    a ``DatasetError`` naming the file.
    """
    options = replace(options or WeightsOptions(), **fields)
    root = Path(root)
    with output_folder(root, subfolders=(WEIGHTS_DIR, WEIGHTS_VIZ_DIR), create=False):
        try:
            return _compute_weights(root, options, progress)
        except OSError as error:
            raise DatasetError(io_error_line(error)) from None


def _compute_weights(
    root: Path, options: WeightsOptions, progress: ProgressCallback | None
) -> WeightsSummary:
    dataset = open_dataset(root)
    split, samples, notes = _choose_samples(dataset, options.split)
    where = f"split {split!r}" if split else "the dataset"
    # What segkit wrote, even under --force: weights.json, plus the maps a run stopped
    # by Ctrl-C finished (its claim) before it could write weights.json.
    written = _read_json(weights_path(root))
    recorded = _with_finished_maps(written, read_claim(root, _STAGE))
    previous = None if options.force else recorded
    if written is None and not options.force and weights_path(root).is_file():
        notes.append(f"{WEIGHTS_FILE} was unreadable; everything was recomputed")
    maps_dir, viz_dir = root / WEIGHTS_DIR, root / WEIGHTS_VIZ_DIR
    if options.border:
        _check_owned(maps_dir, options.force)
    if options.viz:
        _check_owned(viz_dir, options.force)

    # Pass 1: read, check and count every mask before anything is written.
    known = {} if options.force else _known_records(dataset, previous)
    # A run without --border keeps earlier maps that are still up to date.
    kept = _kept_border(previous, options, maps_dir)
    map_options = kept or options
    others = _other_masks(dataset, samples)
    total_steps = len(samples) * (2 if map_options.border or options.viz else 1) + len(others)
    try:
        scans = _scan_all(samples, known, map_options, _offset(progress, 0, total_steps))
        other_ids = _scan_ids(others, options, _offset(progress, len(samples), total_steps))
    except Exception:
        raise
    except BaseException as stop:  # Ctrl-C
        add_note(
            stop, f"stopped while reading masks: nothing was written, {WEIGHTS_FILE} is as before"
        )
        raise
    classes = _class_names(dataset, scans, other_ids, notes)
    check_scheme(options.scheme, beta=options.beta, num_classes=len(classes))
    _check_scans(samples, scans, len(classes), other_ids)
    stats = ClassStats.empty(len(classes))
    for scan in scans:
        stats = stats + stats_from_histogram(_histogram(scan), len(classes))
    if stats.total == 0:
        raise DatasetError(
            f"{root / CLASS_DIR}: no labelled pixels in the {len(scans)} mask(s) of {where} "
            f"(every pixel is {IGNORE_INDEX} = ignore)"
        )
    raw = raw_class_weights(stats, options.scheme, beta=options.beta)
    weights = normalize_class_weights(raw, stats)
    empty = [name for name, n in zip(classes, stats.pixels, strict=True) if n == 0]
    if empty:
        notes.append(
            f"{len(empty)} class(es) without pixels in {where} get the largest weight: "
            f"{short_list(empty)}"
        )

    # Pass 2: weight maps and heat maps whose inputs or options changed.
    plan = _plan_maps(root, samples, scans, weights, map_options, previous)
    if kept is not None and any(task.map_path for task in plan.tasks):
        notes.append(
            f"the weight maps in {WEIGHTS_DIR}/ no longer match the masks, class weights or "
            "map format and were removed; run with --border to rebuild them"
        )
        map_options = options
        plan = _plan_maps(root, samples, scans, weights, map_options, previous)
    if map_options.border:
        _claim(maps_dir, [Path(path).name for path in plan.maps.values()])
    if options.viz:
        _claim(viz_dir, [f"{sample_id}.png" for sample_id in plan.keys])
    done_already = len(samples) - len(plan.tasks) if map_options.border or options.viz else 0
    scanned = len(samples) + len(others)
    if progress is not None and done_already:
        progress(scanned + done_already, total_steps)
    results: list[_MapResult | None] = [None] * len(plan.tasks)
    try:
        parallel_map(
            _make_map,
            plan.tasks,
            workers=options.workers,
            progress=_offset(progress, scanned + done_already, total_steps),
            into=results,
        )
    except Exception:
        raise
    except BaseException as stop:  # Ctrl-C: keep the finished maps for the next run
        finished = _claim_finished(root, plan, results)
        add_note(
            stop,
            f"{finished} of {len(plan.tasks)} weight map(s) written and recorded, the next run "
            f"makes only the rest; {WEIGHTS_FILE} is as before",
        )
        raise
    failed = [result.error for result in results if result is not None and result.error]
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise DatasetError(f"{failed[0]}{more}; the previous weights.json was kept")
    removed = _remove_stale(root, WEIGHTS_DIR, set(plan.maps), ".npy", recorded)
    if options.viz:
        _remove_stale(root, WEIGHTS_VIZ_DIR, set(plan.keys), ".png", recorded)
    with_instances = sum(1 for sample in samples if sample.object_mask is not None)
    if map_options.border and with_instances < len(samples):
        notes.append(
            f"{len(samples) - with_instances} of {len(samples)} image(s) have no "
            f"{OBJECT_DIR} mask; their objects are the 8-connected components of each class"
        )

    border = _border_record(map_options)
    frequencies = stats.frequencies
    rows = tuple(
        ClassSummary(
            id=c,
            name=classes[c],
            pixels=int(stats.pixels[c]),
            images=int(stats.images[c]),
            frequency=float(frequencies[c]),
            weight=float(weights[c]),
            raw_weight=None if math.isnan(raw[c]) else float(raw[c]),
        )
        for c in range(len(classes))
    )
    binary = pos_weight(stats)
    beta = options.beta if options.scheme == "effective-number" else None
    atomic_write_json(
        weights_path(root),
        {
            "schema_version": SCHEMA_VERSION,
            "segkit_version": __version__,
            "split": split,
            "num_images": len(samples),
            "scheme": options.scheme,
            "beta": beta,
            "normalisation": "pixel-weighted mean of the class weights over labelled pixels = 1",
            "zero_pixel_rule": "largest weight of the classes with pixels",
            "ignore_index": IGNORE_INDEX,
            "labelled_pixels": stats.total,
            "ignored_pixels": stats.ignored,
            "class_weights": [row.weight for row in rows],
            "pos_weight": binary,
            "classes": [asdict(row) for row in rows],
            "border": border,
            "maps": plan.maps or None,
            "images": _image_records(root, samples, scans, plan, map_options),
        },
    )
    drop_claim(root, _STAGE)  # weights.json now lists every map
    if dataset.manifest is not None:
        update_manifest(
            root,
            weights={
                "file": WEIGHTS_FILE,
                "weights_sha256": sha256_file(weights_path(root)),
                "split": split,
                "num_images": len(samples),
                "scheme": options.scheme,
                "beta": beta,
                "class_weights": [row.weight for row in rows],
                "pos_weight": binary,
                "weight_maps": WEIGHTS_DIR if map_options.border else None,
                "border": border,
            },
        )
    else:
        notes.append(f"no {MANIFEST_NAME} in the dataset; wrote {WEIGHTS_FILE} only")

    return WeightsSummary(
        root=root,
        weights_file=weights_path(root),
        split=split,
        num_images=len(samples),
        scheme=options.scheme,
        beta=beta,
        classes=rows,
        pos_weight=binary,
        labelled_pixels=stats.total,
        ignored_pixels=stats.ignored,
        maps_dir=maps_dir if map_options.border else None,
        maps_written=sum(1 for r in results if r.map_written),
        maps_unchanged=plan.unchanged,
        maps_removed=removed,
        viz_written=sum(1 for r in results if r.viz_written),
        objects_from_instances=with_instances if map_options.border else 0,
        objects_from_components=len(samples) - with_instances if map_options.border else 0,
        masks_reused=sum(1 for scan in scans if scan.reused),
        manifest_updated=dataset.manifest is not None,
        notes=tuple(notes),
    )
