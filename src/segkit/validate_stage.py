"""Stage ``validate`` on disk: read a dataset's files in parallel and run the checks.

The checks themselves (and the table of check names) are in ``segkit.validate``, which
never touches a file; this module lists the folder, reads each file once, hands the
bytes and arrays to those checks in worker processes, and collects the findings into a
:class:`ValidateSummary`. Nothing in the dataset folder is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit._io import sha256_bytes
from segkit._text import plural, short_list
from segkit.dataset import Dataset, Sample, open_dataset
from segkit.errors import DatasetError, OptionError
from segkit.imagehash import DEFAULT_MAX_DISTANCE, HASH_BITS
from segkit.parallel import ProgressCallback, parallel_map
from segkit.validate import (
    ERROR,
    Finding,
    ImageCheck,
    Issue,
    MaskCheck,
    check_image_bytes,
    check_mask_bytes,
    class_presence_findings,
    disjoint_split_groups,
    duplicate_findings,
    finding,
    geometry_issues,
    instance_issues,
    near_duplicate_findings,
    sort_findings,
    split_findings,
)
from segkit.voc import (
    CLASS_DIR,
    CLASS_NAMES_NAME,
    IGNORE_INDEX,
    IMAGE_SUFFIXES,
    IMAGES_DIR,
    LABELS_NAME,
    MANIFEST_NAME,
    OBJECT_DIR,
    SPLITS_DIR,
    MaskKind,
    read_labels,
    read_split_file,
)


@dataclass(frozen=True)
class ValidateOptions:
    """Options of :func:`validate` (the CLI flags one to one), checked when built.

    ``workers=None`` uses every usable core; ``near_duplicate_distance`` is the largest
    perceptual-hash distance (in bits, 0..64) at which two images count as near-duplicates.
    """

    workers: int | None = None
    near_duplicate_distance: int = DEFAULT_MAX_DISTANCE

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise OptionError(f"--workers must be at least 1, got {self.workers}")
        if not 0 <= self.near_duplicate_distance <= HASH_BITS:
            raise OptionError(
                f"--near-duplicate-distance must be in 0..{HASH_BITS}, "
                f"got {self.near_duplicate_distance}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ValidateSummary:
    """What :func:`validate` found: the findings, sorted (errors first)."""

    root: Path
    samples: int
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        """Findings of severity error."""
        return sum(f.severity == ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        """Findings of severity warning."""
        return len(self.findings) - self.errors

    @property
    def ok(self) -> bool:
        """True when no finding is an error (the CLI exits 1 otherwise)."""
        return self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``--json``)."""
        return {
            "dataset": str(self.root),
            "samples": self.samples,
            "errors": self.errors,
            "warnings": self.warnings,
            "findings": [item.to_dict() for item in self.findings],
        }


@dataclass(frozen=True)
class _SampleTask:
    root: Path
    sample: Sample
    class_names: tuple[str, ...]
    labels_in_oriented_frame: bool


@dataclass(frozen=True)
class _SampleResult:
    sample_id: str
    findings: tuple[Finding, ...]
    file_sha256: tuple[tuple[str, str], ...]
    image_sha256: str | None
    dhash: int | None
    class_ids: frozenset[int]


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _read_file(path: Path) -> bytes | Issue:
    try:
        data = path.read_bytes()
    except OSError as error:
        return ("unreadable", f"cannot read ({error.strerror or error})")
    if not data:
        return ("empty-file", "zero-byte file")
    return data


def _check_sample(task: _SampleTask) -> _SampleResult:
    """All single-sample checks; module level so worker processes can unpickle it."""
    root, sample = task.root, task.sample
    findings: list[Finding] = []
    hashes: list[tuple[str, str]] = []
    image: ImageCheck | None = None
    masks: dict[MaskKind, tuple[str, MaskCheck]] = {}

    def record(path: Path, issues: Iterable[Issue]) -> None:
        findings.extend(finding(check, _rel(root, path), detail) for check, detail in issues)

    if sample.image is not None:
        data = _read_file(sample.image)
        if isinstance(data, tuple):
            record(sample.image, [data])
        else:
            image = check_image_bytes(data)
            record(sample.image, image.issues)
            hashes.append((_rel(root, sample.image), image.sha256))
    roles: tuple[tuple[MaskKind, Path | None], ...] = (
        ("class", sample.class_mask),
        ("instance", sample.object_mask),
    )
    for role, path in roles:
        if path is None:
            continue
        file = _rel(root, path)
        data = _read_file(path)
        if isinstance(data, tuple):
            record(path, [data])
            continue
        hashes.append((file, sha256_bytes(data)))
        check = check_mask_bytes(data, role, len(task.class_names))
        masks[role] = (file, check)
        record(path, check.issues)

    if sample.image is not None and image is not None and image.orientation is not None:
        assert image.size is not None  # the header was read before the decode succeeded
        sizes = {file: mask.size for file, mask in masks.values() if mask.size is not None}
        for name, file, detail in geometry_issues(
            image.size,
            image.orientation,
            sizes,
            labels_in_oriented_frame=task.labels_in_oriented_frame,
        ):
            findings.append(finding(name, file or _rel(root, sample.image), detail))
    class_mask = masks["class"][1] if "class" in masks else None
    object_file, object_mask = masks.get("instance", ("", None))
    if (
        class_mask is not None
        and class_mask.array is not None
        and object_mask is not None
        and object_mask.array is not None
        and object_mask.ignore is not None
        and class_mask.array.shape == object_mask.array.shape
    ):
        findings.extend(
            finding(name, object_file, detail)
            for name, detail in instance_issues(
                class_mask.array,
                object_mask.array,
                object_ignore=object_mask.ignore,
                class_names=task.class_names,
            )
        )
    return _SampleResult(
        sample_id=sample.id,
        findings=tuple(findings),
        file_sha256=tuple(hashes),
        image_sha256=None if image is None else image.sha256,
        dhash=None if image is None else image.dhash,
        class_ids=frozenset() if class_mask is None else class_mask.class_ids,
    )


def _files_by_stem(folder: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if folder.is_dir():
        # scandir's entries carry the file type, sparing one stat per file.
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))
        for name in names:
            found.setdefault(Path(name).stem, []).append(name)
    return found


def _class_list_file(root: Path, manifest: Mapping[str, Any] | None) -> str:
    if manifest is not None:
        return MANIFEST_NAME
    for name in (CLASS_NAMES_NAME, LABELS_NAME):
        if (root / name).is_file():
            return name
    return ""


def _read_splits(dataset: Dataset) -> tuple[dict[str, list[str]], list[Finding]]:
    """The split lists, and an ``unreadable`` finding for each file that cannot be read."""
    folder = dataset.root / SPLITS_DIR
    splits: dict[str, list[str]] = {}
    findings: list[Finding] = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.txt")):
            if path.is_file() and not path.name.startswith("."):
                try:
                    splits[path.stem] = read_split_file(path)
                except DatasetError as error:
                    detail = str(error).removeprefix(f"{path}: ")
                    findings.append(finding("unreadable", _rel(dataset.root, path), detail))
    return splits, findings


def _layout_findings(dataset: Dataset, splits: Mapping[str, Sequence[str]]) -> list[Finding]:
    """Pairing of images and masks, found from the directory listings alone."""
    root = dataset.root
    images = _files_by_stem(root / IMAGES_DIR)
    class_masks = _files_by_stem(root / CLASS_DIR)
    in_a_split = {stem for stems in splits.values() for stem in stems}
    findings: list[Finding] = []
    unlabelled: list[str] = []
    for stem, names in sorted(images.items()):
        usable = [name for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES]
        if len(usable) > 1:
            findings.append(
                finding(
                    "duplicate-stem",
                    f"{IMAGES_DIR}/{usable[1]}",
                    f"{len(usable)} images share the stem {stem!r} ({', '.join(usable)}); "
                    "loaders pick one arbitrarily, keep one",
                )
            )
    for sample in dataset.samples:
        if sample.image is not None and sample.class_mask is None:
            if splits and sample.id not in in_a_split:
                unlabelled.append(_rel(root, sample.image))
                continue
            others = [n for n in class_masks.get(sample.id, []) if not n.lower().endswith(".png")]
            hint = (
                f"; found {CLASS_DIR}/{others[0]}, but masks must be PNG (lossy formats "
                "change the ids)"
                if others
                else ""
            )
            findings.append(
                finding(
                    "missing-mask",
                    _rel(root, sample.image),
                    f"no {CLASS_DIR}/{sample.id}.png{hint}",
                )
            )
        if sample.image is None and sample.class_mask is not None:
            others = images.get(sample.id, [])
            hint = f"; found {IMAGES_DIR}/{others[0]}, not a supported image type" if others else ""
            findings.append(
                finding(
                    "missing-image",
                    _rel(root, sample.class_mask),
                    f"no image {IMAGES_DIR}/{sample.id}.* ({', '.join(IMAGE_SUFFIXES)}){hint}",
                )
            )
    if unlabelled:
        findings.append(
            finding(
                "unlabelled-image",
                IMAGES_DIR,
                f"{plural(len(unlabelled), 'image')} with no class mask and in no split file "
                f"(VOC loaders skip them): {short_list(unlabelled)}",
            )
        )
    known = set(dataset.ids)
    for stem, names in sorted(_files_by_stem(root / OBJECT_DIR).items()):
        if stem not in known and any(name.lower().endswith(".png") for name in names):
            findings.append(
                finding(
                    "missing-image",
                    f"{OBJECT_DIR}/{stem}.png",
                    f"instance mask without an image or a class mask for {stem!r}",
                )
            )
    return findings


def _manifest_findings(
    dataset: Dataset, file_sha256: Mapping[str, str], class_file_names: Sequence[str]
) -> list[Finding]:
    manifest = dataset.manifest
    if manifest is None:
        return []
    root = dataset.root
    findings: list[Finding] = []
    listed: set[str] = set()
    for entry in manifest["samples"]:
        listed.add(entry["id"])
        for kind in ("image", "class_mask", "object_mask"):
            value = entry.get(kind)
            if not isinstance(value, str) or not value:
                continue
            path = Path(value) if Path(value).is_absolute() else root / value
            shown = _rel(root, path)
            if not path.is_file():
                findings.append(
                    finding(
                        "manifest-missing-file",
                        shown,
                        f"{MANIFEST_NAME} lists this {kind.replace('_', ' ')} of "
                        f"{entry['id']!r} but the file is gone",
                    )
                )
                continue
            expected = entry.get(f"{kind}_sha256")
            actual = file_sha256.get(shown)
            if isinstance(expected, str) and actual is not None and actual != expected.lower():
                findings.append(
                    finding(
                        "manifest-mismatch",
                        shown,
                        f"content changed after {MANIFEST_NAME} was written (sha256 "
                        f"{actual[:12]}…, recorded {expected[:12]}…); re-run segkit convert or "
                        "restore the file",
                    )
                )
    for sample in dataset.samples:
        if sample.id not in listed:
            path = sample.image if sample.image is not None else sample.class_mask
            findings.append(
                finding(
                    "not-in-manifest",
                    _rel(root, path) if path is not None else sample.id,
                    f"sample {sample.id!r} is not in {MANIFEST_NAME}; re-run segkit convert "
                    "if it was added by hand",
                )
            )
    classes = list(manifest["classes"])
    for name in class_file_names:
        path = root / name
        if not path.is_file():
            continue
        try:
            names = list(read_labels(path).names)
        except DatasetError as error:
            names = [f"<unreadable: {error}>"]
        if names != classes:
            findings.append(
                finding(
                    "manifest-mismatch",
                    name,
                    f"classes {short_list(names)} differ from {MANIFEST_NAME}'s "
                    f"{short_list(classes)}",
                )
            )
    return findings


def validate(
    dataset: Dataset | Path | str,
    options: ValidateOptions | None = None,
    progress: ProgressCallback | None = None,
    **fields: Any,
) -> ValidateSummary:
    """Check a dataset (a folder, or one already opened); return what was found.

    ``fields`` are :class:`ValidateOptions` fields, a shorthand for building the options.
    ``progress(done, total)`` is called as samples finish. Reads files only.
    """
    options = dataclasses.replace(options or ValidateOptions(), **fields)
    if not isinstance(dataset, Dataset):
        dataset = open_dataset(Path(dataset))
    root = dataset.root
    splits, findings = _read_splits(dataset)
    findings += _layout_findings(dataset, splits)
    tasks = [
        _SampleTask(root, sample, dataset.classes, dataset.manifest is not None)
        for sample in dataset.samples
    ]
    # A sample takes about a millisecond, comparable to a process pool's cost per task;
    # parallel_map sends samples to the workers in chunks, which makes that negligible.
    results = parallel_map(_check_sample, tasks, workers=options.workers, progress=progress)
    file_sha256: dict[str, str] = {}
    image_sha256: dict[str, str] = {}
    dhashes: dict[str, int] = {}
    present: set[int] = set()
    masks_with_ignore = 0
    for result in results:
        findings.extend(result.findings)
        file_sha256.update(result.file_sha256)
        if result.image_sha256 is not None:
            image_sha256[result.sample_id] = result.image_sha256
        if result.dhash is not None:
            dhashes[result.sample_id] = result.dhash
        present |= result.class_ids
        masks_with_ignore += IGNORE_INDEX in result.class_ids

    files = {s.id: _rel(root, s.image) for s in dataset.samples if s.image is not None}
    disjoint = disjoint_split_groups(splits)
    split_of: dict[str, set[str]] = {}
    for name in {name for group in disjoint for name in group}:
        for stem in splits.get(name, ()):
            split_of.setdefault(stem, set()).add(name)
    findings += duplicate_findings(image_sha256, files, split_of, disjoint)
    findings += near_duplicate_findings(
        dhashes,
        image_sha256,
        files,
        split_of,
        max_distance=options.near_duplicate_distance,
        disjoint=disjoint,
    )
    labelled = [s.id for s in dataset.samples if s.image is not None and s.class_mask is not None]
    findings += split_findings(dataset.ids, splits, labelled_ids=labelled)

    class_file = _class_list_file(root, dataset.manifest)
    if dataset.classes:
        findings += class_presence_findings(
            present, dataset.classes, class_file, images_with_ignore=masks_with_ignore
        )
    else:
        findings.append(
            finding(
                "no-class-list",
                "",
                f"no {MANIFEST_NAME}, {CLASS_NAMES_NAME} or {LABELS_NAME}: class ids and "
                f"class presence were not checked; add {CLASS_NAMES_NAME} (one name per "
                "line, background first)",
            )
        )
    findings += _manifest_findings(dataset, file_sha256, (CLASS_NAMES_NAME, LABELS_NAME))
    return ValidateSummary(root, len(dataset.samples), tuple(sort_findings(findings)))


def validate_dataset(
    root: Path | str,
    *,
    workers: int | None = None,
    near_duplicate_distance: int = DEFAULT_MAX_DISTANCE,
    progress: ProgressCallback | None = None,
) -> list[Finding]:
    """Open the VOC folder at ``root`` and check it: the findings of :func:`validate`.

    Kept for the package-level API (``segkit.validate_dataset``), which returns a list.
    """
    options = ValidateOptions(workers=workers, near_duplicate_distance=near_duplicate_distance)
    return list(validate(root, options, progress).findings)
