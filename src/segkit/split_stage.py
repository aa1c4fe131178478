"""Stage ``segkit split``: read a VOC dataset, split it, write ``ImageSets/Segmentation``.

The shell around :mod:`segkit.split`. It reads class presence and pixel counts from
the ``SegmentationClass`` masks (in worker processes; a mask whose SHA-256 matches
the manifest's entry is not decoded again), builds the groups (``--group-by`` regex,
``--groups`` CSV, or near-duplicate images by perceptual hash), takes the previous
split from the split files unless told to reshuffle, and writes:

- ``ImageSets/Segmentation/train.txt``, ``val.txt``, ``trainval.txt`` (= train ∪ val)
  and, when the test fraction is above 0, ``test.txt``: VOC format, one stem per line,
  sorted. ``--test 0`` writes no ``test.txt`` (VOC loaders expect train/val/trainval).
- with ``folds=K``: ``fold{k}_train.txt`` / ``fold{k}_val.txt`` for k = 0..K-1, where
  the K validation parts partition train+val; ``train.txt``/``val.txt`` are fold 0's.
- a record of the split and its parameters under the manifest key ``"splits"`` in
  ``segkit.json``; a folder without a manifest (a hand-made VOC dataset) gets the
  same record in ``ImageSets/Segmentation/splits.json`` instead, so no fake manifest
  is created.

Every option and input is checked before anything is written; each file is written
atomically, and a file whose content would not change is left untouched.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segkit._compat import add_note
from segkit._io import atomic_write_text, io_error_line, sha256_file
from segkit._pillow import DECODE_ERRORS, decode_error_text
from segkit._text import plural, short_list
from segkit.dataset import Dataset, Sample, open_dataset
from segkit.defaults import DEFAULT_TEST as DEFAULT_TEST
from segkit.errors import DatasetError, EmptySplitError, OptionError
from segkit.imagehash import hash_image_file, near_duplicate_groups
from segkit.manifest import load_manifest, update_manifest
from segkit.ownership import drop_claim, note_foreign, output_folder, read_claim, write_claim
from segkit.parallel import ProgressCallback, parallel_map
from segkit.split import SplitResult, SplitStats, assign_splits, split_stats
from segkit.voc import IGNORE_INDEX, MANIFEST_NAME, SPLITS_DIR, read_class_mask, read_split_file

DEFAULT_VAL = 0.2
#: Where the split record goes when the dataset has no ``segkit.json``.
RECORD_NAME = "splits.json"
_FOLD_FILE = re.compile(r"^fold(\d+)_(train|val)\.txt$")
_STAGE = "split"


@dataclass(frozen=True)
class SplitSummary:
    """What ``split_dataset`` did: per-split statistics and everything worth a warning.

    ``splits`` holds one entry per part the data was divided into: train/val/test, or
    fold0..fold{K-1} (each fold's validation part) and test with ``folds``.
    """

    root: Path
    splits: tuple[SplitStats, ...]
    class_names: dict[int, str]
    folds: int | None
    grouping: str
    groups: int
    kept: int
    placed: int
    dropped: int
    excluded: tuple[str, ...]
    uncovered: tuple[tuple[str, str], ...]
    conflicts: tuple[str, ...]
    warnings: tuple[str, ...]
    written: tuple[str, ...]
    removed: tuple[str, ...]
    record: str

    @property
    def images(self) -> int:
        """Images split."""
        return sum(stats.images for stats in self.splits)

    def pixel_share(self, split: SplitStats, class_id: int) -> float:
        """Share of all labelled pixels of ``class_id`` that lie in ``split`` (0 if none)."""
        total = sum(stats.pixels.get(class_id, 0) for stats in self.splits)
        return split.pixels.get(class_id, 0) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``--json``)."""
        return {
            "dataset": str(self.root),
            "images": self.images,
            "groups": self.groups,
            "grouping": self.grouping,
            "folds": self.folds,
            "kept": self.kept,
            "placed": self.placed,
            "dropped": self.dropped,
            "classes": {str(i): name for i, name in self.class_names.items()},
            "splits": [
                {
                    "name": stats.name,
                    "images": stats.images,
                    "groups": stats.groups,
                    "fraction": stats.images / self.images if self.images else 0.0,
                    "target_fraction": stats.target,
                    "pixels": {self.class_names[c]: n for c, n in stats.pixels.items()},
                    "pixel_share": {
                        name: round(self.pixel_share(stats, c), 6)
                        for c, name in self.class_names.items()
                    },
                    "images_with_class": {
                        name: stats.images_with.get(c, 0) for c, name in self.class_names.items()
                    },
                }
                for stats in self.splits
            ],
            "excluded": list(self.excluded),
            "uncovered": [{"class": c, "split": s} for c, s in self.uncovered],
            "conflicting_groups": list(self.conflicts),
            "warnings": list(self.warnings),
            "written": list(self.written),
            "removed": list(self.removed),
            "record": self.record,
        }


# -- options ---------------------------------------------------------------------------


def _fraction(value: float, option: str, *, allow_zero: bool = False) -> float:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float)) and np.isfinite(value) and low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise OptionError(f"{option} must be in {interval}, got {value}")
    return float(value)


def plan_fractions(
    *, val: float | None, test: float, folds: int | None
) -> tuple[dict[str, float], float | None]:
    """The parts to fill and their fractions, in tie-break order; also the val fraction used.

    >>> plan_fractions(val=None, test=0.1, folds=None)
    ({'train': 0.7, 'val': 0.2, 'test': 0.1}, 0.2)
    >>> plan_fractions(val=None, test=0.0, folds=2)
    ({'fold0': 0.5, 'fold1': 0.5}, None)
    """
    test = _fraction(test, "--test", allow_zero=True)
    if folds is not None:
        if folds < 2:
            raise OptionError(f"--folds must be at least 2, got {folds}")
        if val is not None:
            raise OptionError(
                "--val and --folds exclude each other: with --folds K each fold validates "
                "on 1/K of train+val"
            )
        parts = {f"fold{k}": (1 - test) / folds for k in range(folds)}
        return ({**parts, "test": test} if test else parts), None
    val = _fraction(DEFAULT_VAL if val is None else val, "--val")
    if val + test >= 1:
        raise OptionError(f"--val {val} and --test {test} add up to {val + test:g}; must be < 1")
    fractions = {"train": round(1 - val - test, 12), "val": val}
    if test:
        fractions["test"] = test
    return fractions, val


def _compile_group_by(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise OptionError(
            f"--group-by {pattern!r}: not a valid regular expression ({error})"
        ) from None
    if regex.groups < 1:
        raise OptionError(
            f"--group-by {pattern!r} has no capture group; put the group part in "
            r"parentheses, e.g. '^(patient\d+)_'"
        )
    return regex


# -- groups ----------------------------------------------------------------------------


def groups_from_regex(
    stems: Sequence[str], regex: re.Pattern[str]
) -> tuple[dict[str, str], list[str]]:
    """Group id per stem from the first capture group (searched anywhere in the stem).

    Stems the pattern does not match (or whose group is empty) are returned apart; they
    form groups of one. Raises ``OptionError`` when no stem matches.
    """
    groups: dict[str, str] = {}
    unmatched = []
    for stem in stems:
        match = regex.search(stem)
        value = match.group(1) if match else None
        if value:
            groups[stem] = f"re:{value}"
        else:
            unmatched.append(stem)
    if not groups:
        example = ", ".join(repr(stem) for stem in stems[:3])
        raise OptionError(
            f"--group-by {regex.pattern!r} matches none of the {len(stems)} stems (e.g. {example})"
        )
    for stem in unmatched:
        groups[stem] = f"stem:{stem}"
    return groups, unmatched


def read_groups_csv(path: Path, stems: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Group id per stem from a ``stem,group`` CSV (optional header row ``stem,group``).

    Every stem must have a row; rows naming stems not in the dataset are returned apart
    (ignored). Raises ``OptionError`` naming the file and line of the first malformed row.
    """
    if not path.is_file():
        raise OptionError(f"--groups {path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise OptionError(f"--groups {path}: cannot read ({error})") from None
    table: dict[str, str] = {}
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as error:
        raise OptionError(f"--groups {path}: not valid CSV ({error})") from None
    for line, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if line == 1 and [cell.lower() for cell in cells] == ["stem", "group"]:
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise OptionError(f"{path}:{line}: expected 'stem,group', got {','.join(row)!r}")
        stem, group = cells
        if table.get(stem, group) != group:
            raise OptionError(
                f"{path}:{line}: stem {stem!r} is given groups {table[stem]!r} and {group!r}"
            )
        table[stem] = group
    known = set(stems)
    missing = [stem for stem in stems if stem not in table]
    if missing:
        raise OptionError(
            f"{path}: no group for {len(missing)} of {len(stems)} stems: {short_list(missing)}; "
            "add a 'stem,group' row for each"
        )
    extra = sorted(stem for stem in table if stem not in known)
    return {stem: f"csv:{table[stem]}" for stem in stems}, extra


def groups_from_hashes(hashes: Mapping[str, int]) -> dict[str, str]:
    """Near-duplicate images (perceptual hash) share a group; every other stem is alone."""
    groups = {stem: f"stem:{stem}" for stem in hashes}
    for members in near_duplicate_groups(hashes):
        for stem in members:
            groups[stem] = f"dup:{members[0]}"
    return groups


# -- reading masks ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    stem: str
    pixels: tuple[tuple[int, int], ...] = ()
    mask_sha256: str = ""
    image_hash: int | None = None
    error: str | None = None


def _scan_sample(task: tuple[str, str, str | None, str | None, dict | None]) -> _Scan:
    """Pixel counts per class id of one mask (and the image's perceptual hash if asked)."""
    stem, mask_path, image_path, known_sha, known_pixels = task
    try:
        digest = sha256_file(Path(mask_path))
    except OSError as error:
        return _Scan(stem, error=f"{mask_path}: cannot read ({error})")
    if known_pixels is not None and digest == known_sha:
        # The manifest already holds the counts for exactly these bytes.
        pixels = tuple(sorted((int(c), int(n)) for c, n in known_pixels.items() if int(n) > 0))
    else:
        try:
            mask = read_class_mask(Path(mask_path))
        except DatasetError as error:
            return _Scan(stem, error=str(error))
        counts = np.bincount(mask.ravel(), minlength=IGNORE_INDEX + 1)
        pixels = tuple((int(c), int(counts[c])) for c in np.flatnonzero(counts))
    image_hash = None
    if image_path is not None:
        try:
            image_hash = hash_image_file(Path(image_path))
        except DECODE_ERRORS as error:
            return _Scan(
                stem, error=f"{image_path}: cannot read image ({decode_error_text(error)})"
            )
    return _Scan(stem, pixels, digest, image_hash)


def _scan_all(
    dataset: Dataset,
    samples: Sequence[Sample],
    *,
    hash_images: bool,
    workers: int | None,
    progress: ProgressCallback | None,
) -> list[_Scan]:
    known: dict[str, dict[str, Any]] = {}
    if dataset.manifest is not None:
        for entry in dataset.manifest.get("samples", []):
            if isinstance(entry.get("class_pixels"), dict) and isinstance(
                entry.get("class_mask_sha256"), str
            ):
                known[entry["id"]] = entry
    tasks = [
        (
            sample.id,
            str(sample.class_mask),
            str(sample.image) if hash_images else None,
            known.get(sample.id, {}).get("class_mask_sha256"),
            known.get(sample.id, {}).get("class_pixels"),
        )
        for sample in samples
    ]
    # A mask takes about a millisecond, no more than a process pool spends per task;
    # parallel_map sends samples to the workers in chunks, which makes that negligible.
    scans = parallel_map(_scan_sample, tasks, workers=workers, progress=progress)
    failed = [scan.error for scan in scans if scan.error]
    if failed:
        raise DatasetError(
            f"{len(failed)} file(s) cannot be read, nothing written: "
            f"{short_list(failed, 3, sep='; ')}; run `segkit validate` for details"
        )
    return scans


# -- the previous split ----------------------------------------------------------------


def _load_record(root: Path, manifest: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if manifest is not None:
        record = manifest.get("splits")
        return record if isinstance(record, dict) else None
    path = root / SPLITS_DIR / RECORD_NAME
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DatasetError(f"{path}: not valid JSON ({error}); delete it or fix it") from None
        return record if isinstance(record, dict) else None
    return None


def _existing_folds(split_dir: Path) -> set[int]:
    found = set()
    if split_dir.is_dir():
        for path in split_dir.iterdir():
            match = _FOLD_FILE.match(path.name)
            if match and match.group(2) == "val":
                found.add(int(match.group(1)))
    return found


def previous_assignment(
    root: Path,
    manifest: Mapping[str, Any] | None,
    *,
    folds: int | None,
    test: bool,
) -> tuple[dict[str, str], list[str]]:
    """Stem → part from the existing split files (else the split record), plus notes.

    Plain mode reads train/val/test.txt; fold mode reads test.txt and fold{k}_val.txt.
    Raises when the existing split cannot be kept as asked: a stem in two files, a test
    set when none is wanted, or another number of folds.
    """
    split_dir = root / SPLITS_DIR
    notes: list[str] = []
    sources: dict[str, list[str]] = {}
    existing = _existing_folds(split_dir)
    if folds is not None and existing and existing != set(range(folds)):
        raise OptionError(
            f"{split_dir}: the existing split has {len(existing)} fold(s); pass "
            f"--folds {len(existing)} to extend it, or --reshuffle to start over"
        )
    names = [f"fold{k}" for k in range(folds)] if folds else ["train", "val"]
    files = {
        name: split_dir / f"{name}_val.txt" if folds else split_dir / f"{name}.txt"
        for name in names
    }
    files["test"] = split_dir / "test.txt"
    if any(path.is_file() for path in files.values()):
        for name, path in files.items():
            if path.is_file():
                sources[name] = read_split_file(path)
        if (
            folds
            and not existing
            and any((split_dir / f"{n}.txt").is_file() for n in ("train", "val"))
        ):
            notes.append("no fold files yet: train/val stems were placed into folds afresh")
    else:
        record = _load_record(root, manifest)
        if record:
            if folds:
                for k, fold in enumerate(record.get("folds") or []):
                    if k < folds and isinstance(fold, dict):
                        sources[f"fold{k}"] = list(fold.get("val", []))
            else:
                for name in ("train", "val"):
                    sources[name] = list(record.get(name, []))
            sources["test"] = list(record.get("test", []))
            sources = {name: stems for name, stems in sources.items() if stems}
    if sources.get("test") and not test:
        raise OptionError(
            f"{files['test']}: the existing split has a test set of {len(sources['test'])} "
            "stems; keep it with --test F, or start over with --reshuffle"
        )
    assignment: dict[str, str] = {}
    for name, stems in sources.items():
        for stem in stems:
            if assignment.get(stem, name) != name:
                first = assignment[stem]
                raise DatasetError(
                    f"{split_dir}: {stem!r} is listed in both {first} and {name}; fix the "
                    "split files or re-run with --reshuffle"
                )
            assignment[stem] = name
    return assignment, notes


# -- writing ---------------------------------------------------------------------------


def _lines(stems: Sequence[str]) -> str:
    return "".join(f"{stem}\n" for stem in sorted(stems))


def _unchanged(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _check_listable(root: Path, stems: Sequence[str]) -> None:
    """Ids a split file can hold: readers strip each line, so no surrounding spaces."""
    bad = sorted(stem for stem in stems if stem != stem.strip())
    if bad:
        raise DatasetError(
            f"{root}: {plural(len(bad), 'id')} with leading or trailing spaces cannot be "
            f"listed in split files (VOC readers strip each line): "
            f"{short_list([repr(b) for b in bad])}; rename those files"
        )


def _check_writable(split_dir: Path, files: Mapping[str, object]) -> None:
    """Fail before writing anything when a split file's path is taken by a folder."""
    for name in files:
        path = split_dir / f"{name}.txt"
        if path.is_dir():
            raise DatasetError(f"{path}: is a folder, not a split file; move it away")


def _write_if_changed(path: Path, text: str) -> bool:
    if _unchanged(path, text):
        return False
    atomic_write_text(path, text)
    return True


def _outputs(result: SplitResult, folds: int | None) -> tuple[dict[str, list[str]], list[dict]]:
    """File name → stems, and the nnU-Net style fold list (train/val per fold)."""
    test = result.members("test") if "test" in result.split_names else None
    fold_list: list[dict[str, list[str]]] = []
    if folds:
        parts = [result.members(f"fold{k}") for k in range(folds)]
        trainval = sorted(stem for part in parts for stem in part)
        for part in parts:
            held = set(part)
            fold_list.append({"train": [s for s in trainval if s not in held], "val": part})
        files = {"train": fold_list[0]["train"], "val": fold_list[0]["val"]}
    else:
        files = {"train": result.members("train"), "val": result.members("val")}
    files["trainval"] = sorted(files["train"] + files["val"])
    if test is not None:
        files["test"] = test
    for k, fold in enumerate(fold_list):
        files[f"fold{k}_train"] = fold["train"]
        files[f"fold{k}_val"] = fold["val"]
    return files, fold_list


def _recorded_names(record: Mapping[str, Any] | None) -> set[str]:
    """File names in the split folder that an earlier split's record lists as written."""
    files = (record or {}).get("files")
    prefix = f"{SPLITS_DIR}/"
    return {
        value[len(prefix) :]
        for value in (files.values() if isinstance(files, dict) else ())
        if isinstance(value, str) and value.startswith(prefix) and "/" not in value[len(prefix) :]
    }


def _stale_files(
    split_dir: Path, written: Mapping[str, Any], record: Mapping[str, Any] | None
) -> list[Path]:
    """Split files of an earlier run this run replaces by nothing (old folds, old test).

    Only those the earlier run's record lists: a ``test.txt`` or fold file segkit did
    not write is the user's, kept and noted.
    """
    if not split_dir.is_dir():
        return []
    recorded = _recorded_names(record)
    stale, foreign = [], []
    for path in sorted(split_dir.iterdir()):
        ours = _FOLD_FILE.match(path.name) or path.name == "test.txt"
        if ours and path.stem not in written:
            (stale if path.name in recorded else foreign).append(path)
    note_foreign(split_dir, [path.name for path in foreign], "no split record lists them")
    return stale


# -- the stage -------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitOptions:
    """Options of :func:`split_dataset` (the CLI flags one to one), checked when built.

    ``val=None`` means 0.2 (not allowed with ``folds``); ``test`` 0 makes no test split.
    ``group_by`` (a regex) and ``groups_csv`` exclude each other; with neither,
    near-duplicate images are grouped. ``workers=None`` uses every usable core.
    """

    val: float | None = None
    test: float = DEFAULT_TEST
    seed: int = 0
    group_by: str | None = None
    groups_csv: Path | None = None
    folds: int | None = None
    reshuffle: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        plan_fractions(val=self.val, test=self.test, folds=self.folds)
        if self.workers is not None and self.workers < 1:
            raise OptionError(f"--workers must be at least 1, got {self.workers}")
        if self.group_by is not None and self.groups_csv is not None:
            raise OptionError("--group-by and --groups exclude each other; give one")
        if self.group_by is not None:
            _compile_group_by(self.group_by)
        if self.groups_csv is not None and not Path(self.groups_csv).is_file():
            raise OptionError(f"--groups {self.groups_csv}: file not found")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values."""
        data = dataclasses.asdict(self)
        data["groups_csv"] = None if self.groups_csv is None else str(self.groups_csv)
        return data


def split_dataset(
    root: Path | str,
    options: SplitOptions | None = None,
    progress: ProgressCallback | None = None,
    **fields: Any,
) -> SplitSummary:
    """Split the dataset at ``root`` and write its split files (see the module docstring).

    ``fields`` are :class:`SplitOptions` fields, a shorthand for building the options
    (``split_dataset(root, val=0.2, seed=1)``). Existing assignments are kept unless
    ``reshuffle``. Raises ``OptionError`` or ``DatasetError`` before writing anything
    when an option or input is wrong. The dataset is locked while the stage runs (one
    writer per folder).
    """
    options = dataclasses.replace(options or SplitOptions(), **fields)
    val, test, seed, folds = options.val, options.test, options.seed, options.folds
    group_by, groups_csv = options.group_by, options.groups_csv
    reshuffle, workers = options.reshuffle, options.workers
    root = Path(root)
    with output_folder(root, subfolders=(SPLITS_DIR,), create=False):
        try:
            return _split_dataset(
                root,
                val=val,
                test=test,
                seed=seed,
                group_by=group_by,
                groups_csv=groups_csv,
                folds=folds,
                reshuffle=reshuffle,
                workers=workers,
                progress=progress,
            )
        except OSError as error:
            raise DatasetError(io_error_line(error)) from None


def _split_dataset(
    root: Path,
    *,
    val: float | None,
    test: float,
    seed: int,
    group_by: str | None,
    groups_csv: Path | None,
    folds: int | None,
    reshuffle: bool,
    workers: int | None,
    progress: ProgressCallback | None,
) -> SplitSummary:
    fractions, val_used = plan_fractions(val=val, test=test, folds=folds)
    regex = _compile_group_by(group_by) if group_by is not None else None

    dataset = open_dataset(root)
    usable = [s for s in dataset.samples if s.image is not None and s.class_mask is not None]
    excluded = tuple(s.id for s in dataset.samples if s.image is None or s.class_mask is None)
    if not usable:
        raise DatasetError(f"{root}: no image has a class mask; nothing to split")
    stems = [s.id for s in usable]
    _check_listable(root, stems)
    warnings: list[str] = []
    if excluded:
        warnings.append(
            f"{len(excluded)} stem(s) lack an image or a class mask and were left out: "
            + short_list(excluded)
        )

    if regex is not None:
        groups, unmatched = groups_from_regex(stems, regex)
        grouping, kind = f"regex {regex.pattern}", "regex"
        if unmatched:
            warnings.append(
                f"--group-by matched {len(stems) - len(unmatched)} of {len(stems)} stems; "
                f"each other stem is its own group: {short_list(unmatched)}"
            )
    elif groups_csv is not None:
        groups, extra = read_groups_csv(Path(groups_csv), stems)
        grouping, kind = f"csv {groups_csv}", "csv"
        if extra:
            warnings.append(
                f"{groups_csv}: {len(extra)} stem(s) not in the dataset ignored: {short_list(extra)}"
            )
    else:
        groups = {}
        grouping, kind = "near-duplicate images", "near-duplicates"

    previous: dict[str, str] = {}
    if not reshuffle:
        previous, notes = previous_assignment(
            root, dataset.manifest, folds=folds, test="test" in fractions
        )
        warnings.extend(notes)
    # A run stopped while writing its files left some new, some old: it recorded the
    # assignment it started from, and the same command starts from it again.
    claim = read_claim(root, _STAGE)
    started = (claim or {}).get("previous")
    if isinstance(started, dict) and all(isinstance(v, str) for v in started.values()):
        previous = {str(stem): split for stem, split in started.items()}

    try:
        scans = _scan_all(
            dataset,
            usable,
            hash_images=kind == "near-duplicates",
            workers=workers,
            progress=progress,
        )
    except Exception:
        raise
    except BaseException as stop:  # Ctrl-C
        add_note(stop, "stopped while reading the dataset: nothing was written")
        raise
    pixels = {scan.stem: dict(scan.pixels) for scan in scans}
    if kind == "near-duplicates":
        groups = groups_from_hashes({scan.stem: scan.image_hash for scan in scans})  # type: ignore[misc]
    classes = {
        stem: [c for c, n in counts.items() if n and c != IGNORE_INDEX]
        for stem, counts in pixels.items()
    }

    try:
        result = assign_splits(
            classes,
            fractions,
            seed=seed,
            groups=groups,
            previous={stem: split for stem, split in previous.items() if stem in classes},
        )
    except EmptySplitError as error:
        hint = " (or --test 0)" if error.split == "test" else ""
        raise DatasetError(
            f"{root / SPLITS_DIR}: the existing split keeps every image in other splits, "
            f"so {error.split!r} would be empty; re-run with --reshuffle{hint}"
        ) from None
    dropped = sum(1 for stem in previous if stem not in classes)
    stats = split_stats(
        result,
        {s: {c: n for c, n in p.items() if c != IGNORE_INDEX} for s, p in pixels.items()},
        fractions,
    )

    seen_ids = sorted({c for counts in classes.values() for c in counts})
    names = {c: dataset.classes[c] if c < len(dataset.classes) else f"class {c}" for c in seen_ids}
    warnings.extend(_coverage_warnings(result, classes, names))
    warnings.extend(_size_warnings(result, stats, previous))
    if dropped:
        warnings.append(
            f"{dropped} stem(s) of the previous split no longer exist (or lack a mask) and were dropped"
        )

    files, fold_list = _outputs(result, folds)
    split_dir = root / SPLITS_DIR
    _check_writable(split_dir, files)
    earlier_record = _load_record(root, dataset.manifest)
    write_claim(root, _STAGE, previous=previous)
    written = []
    removed = []
    in_place = 0
    try:
        for name, members in files.items():
            if _write_if_changed(split_dir / f"{name}.txt", _lines(members)):
                written.append(f"{SPLITS_DIR}/{name}.txt")
            in_place += 1
        for path in _stale_files(split_dir, files, earlier_record):
            path.unlink()
            removed.append(f"{SPLITS_DIR}/{path.name}")
    except OSError as error:
        raise DatasetError(f"{split_dir}: cannot write the split files ({error})") from None
    except BaseException as stop:  # Ctrl-C: the claim keeps the assignment for the rerun
        add_note(stop, f"{in_place} of {len(files)} split file(s) in place")
        raise

    record = _record(
        files=files,
        fold_list=fold_list,
        result=result,
        scans=scans,
        params={
            "val": val_used,
            "test": fractions.get("test", 0.0),
            "seed": seed,
            "folds": folds,
            "grouping": kind,
            "group_by": group_by,
            "groups_csv": str(groups_csv) if groups_csv is not None else None,
            "groups_csv_sha256": sha256_file(Path(groups_csv)) if groups_csv is not None else None,
        },
    )
    if load_manifest(root) is not None:
        update_manifest(root, splits=record)
        record_name = MANIFEST_NAME
    else:
        record_path = split_dir / RECORD_NAME
        text = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        if not _unchanged(record_path, text):
            atomic_write_text(record_path, text)
        record_name = f"{SPLITS_DIR}/{RECORD_NAME}"
    drop_claim(root, _STAGE)

    return SplitSummary(
        root=root,
        splits=tuple(stats),
        class_names=names,
        folds=folds,
        grouping=grouping,
        groups=len(set(result.group_of.values())),
        kept=result.kept,
        placed=result.placed,
        dropped=dropped,
        excluded=excluded,
        uncovered=tuple((names[c], split) for c, split in result.uncovered),
        conflicts=result.conflicts,
        warnings=tuple(warnings),
        written=tuple(written),
        removed=tuple(removed),
        record=record_name,
    )


def _coverage_warnings(
    result: SplitResult, classes: Mapping[str, Sequence[int]], names: Mapping[int, str]
) -> list[str]:
    lines = []
    groups_with: dict[int, set[str]] = {}
    for stem, ids in classes.items():
        for c in ids:
            groups_with.setdefault(c, set()).add(result.group_of[stem])
    k = len(result.split_names)
    for c in sorted(groups_with):
        if len(groups_with[c]) < k:
            lines.append(
                f"class {names[c]!r} is in only {len(groups_with[c])} group(s), fewer than the "
                f"{k} splits; it cannot reach every split"
            )
    missing: dict[int, list[str]] = {}
    for c, split in result.uncovered:
        missing.setdefault(c, []).append(split)
    for c, splits in missing.items():
        lines.append(
            f"class {names[c]!r} is missing from {', '.join(splits)}: no group with it fits "
            "there without overfilling the split (or the kept split holds them all)"
        )
    for group in result.conflicts:
        lines.append(
            f"group {group.split(':', 1)[-1]!r} spans several splits in the previous split; "
            "kept as it was (re-run with --reshuffle to regroup)"
        )
    return lines


#: A fresh split more than this share (and one image) off its target gets a warning.
_GROUP_SIZE_SLACK = 0.2


def _size_warnings(
    result: SplitResult, stats: Sequence[SplitStats], previous: Mapping[str, str]
) -> list[str]:
    total = sum(s.images for s in stats)
    if previous:
        largest = max(Counter(result.group_of.values()).values())
        off = [s for s in stats if abs(s.images - s.target * total) >= largest]
        cause, advice = "kept assignments leave", "; --reshuffle rebalances"
    else:
        # Whole groups move together; coarse groups can keep a split far from its share.
        off = [
            s
            for s in stats
            if abs(s.images - s.target * total) >= max(1.0, _GROUP_SIZE_SLACK * s.target * total)
        ]
        cause, advice = "whole groups leave", " (groups are never divided)"
    if not off:
        return []
    shown = ", ".join(f"{s.name} {s.images} (target {s.target * total:.1f})" for s in off)
    return [f"{cause} the sizes off target: {shown}{advice}"]


def _record(
    *,
    files: Mapping[str, list[str]],
    fold_list: list[dict],
    result: SplitResult,
    scans: Sequence[_Scan],
    params: dict[str, Any],
) -> dict[str, Any]:
    """The manifest ``"splits"`` entry: parameters, lists, and a digest of the masks read."""
    digest = hashlib.sha256()
    for scan in sorted(scans, key=lambda scan: scan.stem):
        digest.update(f"{scan.stem}\0{scan.mask_sha256}\n".encode())
    members: dict[str, list[str]] = {}
    for stem, group in result.group_of.items():
        members.setdefault(group, []).append(stem)
    record: dict[str, Any] = {
        "params": params,
        "masks_sha256": digest.hexdigest(),
        "files": {name: f"{SPLITS_DIR}/{name}.txt" for name in files},
        "train": files["train"],
        "val": files["val"],
    }
    if "test" in files:
        record["test"] = files["test"]
    if fold_list:
        record["folds"] = fold_list
    record["groups"] = sorted(sorted(m) for m in members.values() if len(m) > 1)
    return record
