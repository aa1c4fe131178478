"""Stage 1: a folder of labelme JSON files → a Pascal-VOC dataset (parallel, incremental, atomic)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from segkit import __version__
from segkit._compat import add_note
from segkit._io import atomic_write_text
from segkit._text import is_unicode, printable
from segkit.convert_one import (
    UNLINK_ERRORS,
    Fingerprints,
    Job,
    LabelPolicy,
    Outcome,
    Parsed,
    convert_one,
    options_fingerprint,
)
from segkit.errors import AnnotationError, DatasetError, ManifestError, OptionError
from segkit.labelme import (
    DEFAULT_MAX_PIXELS,
    parse_annotation,
    read_annotation_bytes,
    scan_labels,
)
from segkit.manifest import load_manifest, new_manifest, save_manifest
from segkit.ownership import (
    check_apart,
    check_real_folders,
    drop_claim,
    is_bookkeeping,
    note_foreign,
    output_folder,
    read_claim,
    write_claim,
)
from segkit.parallel import ProgressCallback, parallel_map, worker_pool
from segkit.voc import (
    BACKGROUND_LABEL,
    CLASS_DIR,
    CLASS_NAMES_NAME,
    CLASS_VIZ_DIR,
    IGNORE_INDEX,
    IGNORE_LABEL,
    IMAGE_SUFFIXES,
    IMAGES_DIR,
    LABELS_NAME,
    MANIFEST_NAME,
    OBJECT_DIR,
    LabelSet,
    parse_labels,
    read_labels,
)

UNKNOWN_LABEL_POLICIES = ("error", "ignore", "background", "skip")
IMAGE_FORMATS = ("jpg", "png")
#: Bump when the bytes convert writes for the same input change, to invalidate re-run skips.
OUTPUT_FORMAT_VERSION = 3
#: Longest id in UTF-8 bytes: with a suffix and the temporary name's 14 extra characters
#: it stays well inside the 255 bytes a file name may have.
MAX_STEM_BYTES = 200
#: Parsed annotations the label scan hands to the conversion are held here as compact
#: bytes (about the JSON's size) between the two passes; past this total, the workers
#: parse the remaining files again instead.
_PARSED_BUDGET = 256 * 2**20


@dataclass(frozen=True)
class ConvertOptions:
    """Options of :func:`convert` (the CLI flags one to one), checked when built.

    ``labels``: a labels.txt path, comma-separated class names, a sequence of names or a
    ``LabelSet``; ``None`` discovers them. ``label_map`` renames labels (OLD → NEW).
    ``workers=None`` uses every usable core.
    """

    labels: str | Sequence[str] | LabelSet | None = None
    label_map: Mapping[str, str] = field(default_factory=dict)
    unknown_label: str = "error"
    image_format: str = "jpg"
    viz: bool = False
    workers: int | None = None
    force: bool = False
    fail_fast: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.unknown_label not in UNKNOWN_LABEL_POLICIES:
            raise OptionError(
                f"--unknown-label {self.unknown_label!r}; choose from {UNKNOWN_LABEL_POLICIES}"
            )
        if self.image_format not in IMAGE_FORMATS:
            raise OptionError(f"--image-format {self.image_format!r}; choose from {IMAGE_FORMATS}")
        if self.max_pixels <= 0:
            raise OptionError("--max-pixels must be positive")
        if self.workers is not None and self.workers < 1:
            raise OptionError(f"--workers must be at least 1, got {self.workers}")
        # A copy, so a caller's later edits to its dict cannot change frozen options.
        object.__setattr__(self, "label_map", dict(self.label_map or {}))
        if self.labels is not None and not isinstance(self.labels, (str, LabelSet)):
            object.__setattr__(self, "labels", tuple(self.labels))

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.labels, LabelSet):
            data["labels"] = list(self.labels.names)
        elif isinstance(self.labels, tuple):
            data["labels"] = list(self.labels)
        data["label_map"] = dict(self.label_map)
        return data


@dataclass
class ConvertSummary:
    """What a conversion did. ``failures`` holds one line per file that could not be converted."""

    output: Path
    classes: tuple[str, ...]
    images: int = 0
    converted: int = 0
    up_to_date: int = 0
    failures: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    shape_types: Counter[str] = field(default_factory=Counter)
    class_pixels: dict[str, int] = field(default_factory=dict)
    labels_discovered: bool = False
    #: What the search for labelme files passed over on purpose, by kind (see
    #: :func:`skipped_entries`); empty when nothing was.
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every file converted."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``--json``)."""
        return {
            "output": str(self.output),
            "classes": list(self.classes),
            "images": self.images,
            "converted": self.converted,
            "up_to_date": self.up_to_date,
            "failures": self.failures,
            "removed": self.removed,
            "shape_types": dict(self.shape_types),
            "class_pixels": self.class_pixels,
            "skipped": self.skipped,
        }


def _is_dataset(folder: Path) -> bool:
    """Whether ``folder`` holds a segkit manifest (a labelme file may be named segkit.json)."""
    try:
        return load_manifest(folder) is not None
    except ManifestError:
        return False


def _entries(input_dir: Path) -> list[tuple[tuple[str, ...], os.DirEntry[str]]]:
    """Every entry below ``input_dir`` with its relative path parts, as ``rglob("*")``
    lists them: linked folders are listed but not entered, unreadable folders skipped.

    One ``os.scandir`` per folder: a tenth of what ``rglob`` and ``relative_to`` cost.
    """
    listed: list[tuple[tuple[str, ...], os.DirEntry[str]]] = []
    folders: list[tuple[tuple[str, ...], str]] = [((), os.fspath(input_dir))]
    while folders:
        parts, folder = folders.pop()
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except (PermissionError, FileNotFoundError, NotADirectoryError):
            continue  # unreadable, or gone: as rglob, nothing listed
        for entry in entries:
            relative = (*parts, entry.name)
            listed.append((relative, entry))
            try:
                enter = entry.is_dir() and not entry.is_symlink()
            except OSError:
                enter = False
            if enter:
                folders.append((relative, entry.path))
    return listed


def _suffix(name: str) -> str:
    """``PurePath(name).suffix``: a leading dot alone starts no suffix, nor a final one."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def _is_hidden(relative: tuple[str, ...]) -> bool:
    return any(part.startswith(".") for part in relative)


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _annotations(
    input_dir: Path, entries: list[tuple[tuple[str, ...], os.DirEntry[str]]], exclude: Path | None
) -> list[Path]:
    datasets = {
        relative[:-1]
        for relative, _ in entries
        if relative[-1] == MANIFEST_NAME
        and len(relative) > 1
        and _is_dataset(input_dir.joinpath(*relative[:-1]))
    }
    found = []
    real_folders: dict[Path, Path] = {}
    for relative, entry in entries:
        if _suffix(relative[-1]).lower() != ".json" or _is_hidden(relative):
            continue
        if not _is_file(entry):
            continue
        if any(relative[:depth] in datasets for depth in range(1, len(relative))):
            continue
        path = Path(entry.path)
        if exclude is not None and _real_path(path, real_folders).is_relative_to(exclude):
            continue
        found.append(path)
    return sorted(found)


def find_annotations(input_dir: Path, exclude: Path | None = None) -> list[Path]:
    """labelme JSON files below ``input_dir`` (recursive, sorted), skipping hidden entries.

    The suffix matches in any case (``.JSON`` from Windows tools too). A sub-folder
    holding a segkit manifest (``segkit.json``) is a dataset, not annotations: skipped whole.
    """
    return _annotations(input_dir, _entries(input_dir), exclude)


def _real_path(path: Path, real_folders: dict[Path, Path]) -> Path:
    """``path.resolve()``, resolving each folder once (``real_folders`` caches them).

    A path that is not a link itself resolves to its resolved folder plus its name.
    """
    if path.is_symlink():
        return path.resolve()
    folder = real_folders.get(path.parent)
    if folder is None:
        folder = real_folders[path.parent] = path.parent.resolve()
    return folder / path.name


def _skipped(entries: list[tuple[tuple[str, ...], os.DirEntry[str]]]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for relative, entry in entries:
        try:
            linked_folder = entry.is_symlink() and entry.is_dir()
        except OSError:
            linked_folder = False
        if linked_folder:
            counts["symlinked folder"] += 1
        elif _suffix(relative[-1]).lower() == ".json" and _is_hidden(relative):
            counts["hidden file"] += 1
    return dict(sorted(counts.items()))


def skipped_entries(input_dir: Path) -> dict[str, int]:
    """What :func:`find_annotations` passes over on purpose, counted by kind.

    ``symlinked folder``: a linked sub-folder is not followed (it could loop, or lead
    outside the input); ``hidden file``: a ``.json`` file that is hidden or lies in a
    hidden folder.

    >>> skipped_entries(Path("/nonexistent"))
    {}
    """
    return _skipped(_entries(input_dir))


def _split_by_name(input_dir: Path, sources: list[Path]) -> tuple[list[Path], list[str]]:
    """Sources whose relative path is UTF-8, and one failure line per other source.

    Ids, labels.txt and segkit.json are UTF-8 text, so such a file could never be
    recorded; it fails alone instead of the whole run.
    """
    kept, failures = [], []
    for path in sources:
        if is_unicode(path.relative_to(input_dir).as_posix()):
            kept.append(path)
        else:
            failures.append(
                f"{printable(str(path))}: file name is not valid UTF-8; rename the file "
                "(ids and the manifest are UTF-8 text)"
            )
    return kept, failures


def _usable_stem(stem: object) -> TypeGuard[str]:
    """A previous id may name files only if it is one plain, UTF-8 path component."""
    return (
        isinstance(stem, str)
        and stem not in ("", ".", "..")
        and "/" not in stem
        and "\\" not in stem
        and "\0" not in stem
        and stem == _listable(stem)
        and is_unicode(stem)
    )


def _path_hash(rel: Path) -> str:
    return hashlib.sha256(rel.as_posix().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _with_hash(stem: str, rel: Path) -> str:
    """``stem-<8 hex of the path's SHA-256>``, ``stem`` cut so it fits ``MAX_STEM_BYTES``."""
    digest = _path_hash(rel)
    room = MAX_STEM_BYTES - len(digest) - 1
    head = stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{head}-{digest}"


_LINE_SPACES = str.maketrans({c: " " for c in "\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def _listable(text: str) -> str:
    """``text`` as one line of a split file: line breaks and tabs as spaces, stripped."""
    return text.translate(_LINE_SPACES).strip()


def _candidate_stem(rel: Path) -> str:
    """``a/b/c.json`` → ``a__b__c``; a longer id than ``MAX_STEM_BYTES`` is cut and hashed.

    Split files list one id per line and readers strip lines, so line breaks and tabs
    become spaces and each part loses surrounding spaces.
    """
    stem = "__".join(_listable(part) or "_" for part in rel.with_suffix("").parts)
    if len(stem.encode("utf-8", "surrogateescape")) <= MAX_STEM_BYTES:
        return stem
    return _with_hash(stem, rel)


def stems_for(relatives: list[Path], previous: Mapping[str, str] | None = None) -> list[str]:
    """Unique, stable dataset ids from relative JSON paths.

    ``a/b/c.json`` → ``a__b__c``: derived from the whole path, so same-named files in
    different folders differ. Ids that still collide (also case-insensitively, for
    case-insensitive file systems) get a short hash of their path, and so do ids over
    ``MAX_STEM_BYTES`` (cut to fit: file names hold 255 bytes). ``previous`` maps
    POSIX relative paths to the ids an earlier run gave them; those are kept, so
    adding a file never renames an existing one.
    """
    previous = previous or {}
    stems: list[str | None] = [None] * len(relatives)
    taken: set[str] = set()
    for index, rel in enumerate(relatives):
        old = previous.get(rel.as_posix())
        if _usable_stem(old) and old.casefold() not in taken:
            stems[index] = old
            taken.add(old.casefold())
    candidates = [_candidate_stem(rel) for rel in relatives]
    folded = Counter(candidate.casefold() for candidate in candidates)
    for index, (candidate, rel) in enumerate(zip(candidates, relatives, strict=True)):
        if stems[index] is not None:
            continue
        if folded[candidate.casefold()] > 1 or candidate.casefold() in taken:
            candidate = _with_hash(candidate, rel)
        stems[index] = candidate
        taken.add(candidate.casefold())
    return [stem for stem in stems if stem is not None]


def parse_label_map(pairs: list[str]) -> dict[str, str]:
    """``["old=new", ...]`` → ``{"old": "new"}``; one label mapped two ways is an error.

    >>> parse_label_map(["kitten=cat", "puppy = dog"])
    {'kitten': 'cat', 'puppy': 'dog'}
    """
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise OptionError(f"--map {pair!r}: expected OLD=NEW")
        old, new = old.strip(), new.strip()
        if mapping.get(old, new) != new:
            raise OptionError(f"--map {old}={mapping[old]} and --map {old}={new} conflict")
        mapping[old] = new
    return mapping


def resolve_labels(spec: str | Sequence[str] | LabelSet | None) -> LabelSet | None:
    """``--labels``: a labels.txt path, or a comma-separated list; ``None`` to discover.

    From Python, a sequence of class names (labels.txt order) or a ``LabelSet`` also works.
    """
    if spec is None or isinstance(spec, LabelSet):
        return spec
    if not isinstance(spec, str):
        return parse_labels("\n".join(spec), "labels")
    path = Path(spec)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError:  # a class list longer than a file name may be
        is_file = is_dir = False
    if is_file:
        return read_labels(path)
    if spec.strip() and is_dir:
        raise OptionError(
            f"--labels {spec}: is a folder; give a labels.txt file or comma-separated classes"
        )
    # Labels may contain "/", so only a comma-free value can be a missing file.
    if "," not in spec and (path.suffix == ".txt" or "/" in spec):
        raise OptionError(
            f"--labels {spec}: file not found (to pass one class name, end it with a comma)"
        )
    return parse_labels(spec, "--labels")


#: A scan's answer: the file's labels, the error that stops it, the parsed annotation.
_Scan = tuple[list[str], str | None, Parsed | None]


def _scan_labels(path: Path) -> _Scan:
    """Labels of one file; only its shape labels must be valid (enough to check a given list).

    The whole file is parsed, once: when it parses, the conversion reuses the result.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        return [], f"{path}: {error}", None
    try:
        annotation = parse_annotation(path, raw)
    except AnnotationError:  # reported by its conversion; only its labels count here
        try:
            return scan_labels(path, raw), None, None
        except AnnotationError as error:
            return [], str(error), None
    return [shape.label for shape in annotation.shapes], None, Parsed.of(annotation, raw)


def _scan_labels_strict(path: Path) -> _Scan:
    """Labels of one file whose shapes all parse: a file that will fail adds no class."""
    try:
        raw = read_annotation_bytes(path)
        annotation = parse_annotation(path, raw)
    except AnnotationError as error:
        return [], str(error), None
    return [shape.label for shape in annotation.shapes], None, Parsed.of(annotation, raw)


def _within_budget(parsed: Sequence[Parsed | None]) -> list[Parsed | None]:
    """The parsed annotations to hand on, the first ``_PARSED_BUDGET`` bytes of them."""
    kept: list[Parsed | None] = []
    total = 0
    for item in parsed:
        total += len(item.payload) if item is not None else 0
        kept.append(item if total <= _PARSED_BUDGET else None)
    return kept


def _previous_labels(output: Path, manifest: Mapping[str, Any] | None) -> LabelSet | None:
    """The classes an earlier run discovered: its labels.txt, else its manifest."""
    if manifest is None:
        return None
    if (output / LABELS_NAME).is_file():
        return read_labels(output / LABELS_NAME)
    if manifest["classes"]:
        # labels.txt was deleted: the manifest still knows the ids in use.
        return parse_labels("\n".join(manifest["classes"]), MANIFEST_NAME)
    return None


def _check_label_text(label_set: LabelSet | None, mapping: Mapping[str, str]) -> None:
    """Labels from the command line end up in labels.txt and segkit.json: UTF-8 only."""
    names = [*(label_set.names if label_set else ()), *mapping, *mapping.values()]
    for name in names:
        if not is_unicode(name):
            raise OptionError(
                f"label {printable(repr(name))} is not valid UTF-8 (a command-line argument "
                "in another encoding?); labels.txt and segkit.json are UTF-8"
            )


def _discover_labels(found: dict[str, list[str]], previous: LabelSet | None) -> LabelSet:
    """Earlier classes keep their ids; new labels are appended in sorted order."""
    known = list(previous.names) if previous else [BACKGROUND_LABEL]
    seen = {label for labels in found.values() for label in labels}
    new = sorted(seen - set(known) - {IGNORE_LABEL})
    if len(known) + len(new) > IGNORE_INDEX:
        raise AnnotationError(
            f"{len(known) + len(new)} classes found (with {BACKGROUND_LABEL}); a PNG mask "
            f"holds at most {IGNORE_INDEX} (ids 0..{IGNORE_INDEX - 1}); merge labels with "
            "--map OLD=NEW or list the classes with --labels"
        )
    return LabelSet((*known, *new))


def _unknown_label_error(found: dict[str, list[str]], ids: dict[str, int]) -> AnnotationError:
    where: dict[str, list[str]] = {}
    for source, labels in found.items():
        for label in sorted(set(labels) - set(ids)):
            where.setdefault(label, []).append(source)
    parts = [
        f"{label!r} ({', '.join(files[:3])}{f' +{len(files) - 3} more' if len(files) > 3 else ''})"
        for label, files in sorted(where.items())
    ]
    return AnnotationError(
        f"labels not in the label list: {'; '.join(parts)}; add them to --labels, map them "
        "with --map OLD=NEW, or pass --unknown-label ignore|background|skip"
    )


def existing_outputs_by_stem(output: Path) -> dict[str, tuple[str, ...]]:
    """Images (any image suffix) and visualizations already in ``output``, by sample id.

    Listed once, so that workers need not try to delete every name an earlier run
    might have written.
    """
    found: dict[str, list[str]] = {}
    for folder, suffixes in ((IMAGES_DIR, IMAGE_SUFFIXES), (CLASS_VIZ_DIR, (".jpg",))):
        try:
            names = os.listdir(output / folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            stem, suffix = os.path.splitext(name)
            if suffix in suffixes:
                found.setdefault(stem, []).append(f"{folder}/{name}")
    return {stem: tuple(sorted(paths)) for stem, paths in found.items()}


_OUTPUT_DIRS = (IMAGES_DIR, CLASS_DIR, OBJECT_DIR, CLASS_VIZ_DIR)
_STAGE = "convert"


@contextlib.contextmanager
def _claimed(output: Path) -> Iterator[None]:
    """Lock ``output`` (creating it) for this run; a folder this run created and left
    empty, because it failed before writing, is removed again."""
    created = not output.exists()
    try:
        with output_folder(output, subfolders=_OUTPUT_DIRS):
            yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                output.rmdir()
        raise


def _recorded_outputs(output: Path) -> set[str] | None:
    """Sample outputs the manifest lists, read leniently (a manifest ``--force`` replaces
    because a field is malformed still says which files segkit wrote); ``None`` when a
    manifest exists but says nothing readable."""
    path = output / MANIFEST_NAME
    if not path.is_file():
        return set()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        return None
    return {path for s in samples if isinstance(s, dict) for path in _output_paths(s)}


def _owned_outputs(output: Path, stems: Sequence[str]) -> set[str]:
    """Every sample output segkit wrote in ``output``: recorded, or claimed by a run that
    was interrupted before recording them. In a dataset whose manifest is unreadable
    (only ``--force`` gets here), the outputs named by this run's ids count as segkit's."""
    owned = _recorded_outputs(output)
    if owned is None:
        owned = {path for stem in stems for path in _stem_outputs(stem)}
    claim = read_claim(output, _STAGE) or {}
    ids, foreign = claim.get("pending_ids"), claim.get("foreign")
    if isinstance(ids, list):
        unclaimed = (
            {f for f in foreign if isinstance(f, str)} if isinstance(foreign, list) else set()
        )
        claimed = {path for stem in ids if _usable_stem(stem) for path in _stem_outputs(stem)}
        owned |= claimed - unclaimed
    return owned


def _foreign_outputs(output: Path, stems: Sequence[str], owned: set[str]) -> dict[str, list[str]]:
    """Per id, the files at its output names that segkit did not write (kept, never replaced)."""
    present: set[str] = set()
    for folder in _OUTPUT_DIRS:  # one listing per folder, not a stat per name
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            present.update(f"{folder}/{name}" for name in os.listdir(output / folder))
    foreign: dict[str, list[str]] = {}
    for stem in stems:
        for relative in _stem_outputs(stem):
            if relative in present and relative not in owned:
                foreign.setdefault(stem, []).append(relative)
    return foreign


def _previous_manifest(output: Path, force: bool) -> dict[str, Any] | None:
    """The output's manifest, if any; a broken one stops the run unless ``force`` replaces it."""
    if not output.is_dir():
        return None
    try:
        return load_manifest(output)
    except ManifestError as error:
        if force:
            return None  # --force replaces the dataset: the broken manifest is not needed
        raise ManifestError(f"{error}; pass --force to replace the dataset") from None


def _previous_input(manifest: Mapping[str, Any] | None) -> object:
    """The input folder an earlier run recorded (``None`` when unknown)."""
    return ((manifest or {}).get("convert") or {}).get("input")


def _from_other_input(manifest: Mapping[str, Any] | None, input_dir: Path) -> bool:
    """Whether the dataset was converted from a different input folder than ``input_dir``."""
    return _previous_input(manifest) not in (None, "", str(input_dir.resolve()))


def _check_output(input_dir: Path, output: Path, force: bool) -> dict[str, Any] | None:
    for parent in (output, *output.parents):
        if parent.exists():
            if not parent.is_dir():
                raise OptionError(f"{output}: {parent} exists and is not a folder")
            break
    check_apart(output, {"input folder": input_dir})
    manifest = _previous_manifest(output, force)
    resumable = read_claim(output, _STAGE) is not None  # a first run that was interrupted
    if (
        manifest is None
        and not resumable
        and output.is_dir()
        and any(not is_bookkeeping(path.name) for path in output.iterdir())
        and not force
    ):
        raise OptionError(
            f"{output}: folder is not empty and has no {MANIFEST_NAME}; choose a new "
            "folder or pass --force to write into it"
        )
    if _from_other_input(manifest, input_dir) and not force:
        raise OptionError(
            f"{output}: was converted from {_previous_input(manifest)}, not {input_dir.resolve()}; "
            "a run from another folder would remove the samples that are not in it. "
            "Choose a new output folder, or pass --force to replace the dataset"
        )
    return manifest


def _options(labels: LabelSet, policy: LabelPolicy, image_format: str, viz: bool) -> dict:
    """The options that decide the bytes convert writes (hashed to detect changes)."""
    return {
        "format_version": OUTPUT_FORMAT_VERSION,
        "labels": labels.to_ids(),
        "map": policy.mapping,
        "unknown_label": policy.unknown,
        "image_format": image_format,
        "viz": viz,
    }


_OUTPUT_KEYS = ("image", "class_mask", "object_mask", "visualization")


def _output_paths(sample: Mapping[str, Any]) -> list[str]:
    return [sample[key] for key in _OUTPUT_KEYS if isinstance(sample.get(key), str)]


def _stem_outputs(stem: str) -> list[str]:
    """Every file a sample with id ``stem`` may own."""
    return [
        *(f"{IMAGES_DIR}/{stem}{suffix}" for suffix in IMAGE_SUFFIXES),
        f"{CLASS_DIR}/{stem}.png",
        f"{OBJECT_DIR}/{stem}.png",
        f"{CLASS_VIZ_DIR}/{stem}.jpg",
    ]


def _is_kept(output: Path, relative: str, keep: Mapping[str, str]) -> bool:
    """Whether ``relative`` is an output of this run, or the same file as one.

    ``keep`` maps casefolded kept paths to the paths themselves.
    """
    kept = keep.get(relative.casefold())
    if kept is None:
        return False
    if kept == relative:
        return True
    try:
        return os.path.samefile(output / relative, output / kept)
    except OSError:
        return False


def _remove_outputs(output: Path, relatives: list[str], keep: Mapping[str, str]) -> None:
    """Delete ``relatives`` below ``output``, except this run's outputs (``keep``).

    A stale ``Scene.jpg`` and a fresh ``scene.jpg`` are one file on a case-insensitive
    file system, and two on others; only the second case deletes the stale one.
    """
    root = output.resolve()
    for relative in relatives:
        if _is_kept(output, relative, keep):
            continue
        target = output / relative
        # The manifest is a file users can edit: never delete outside the dataset, and
        # delete a link itself, never what it points to.
        if not target.parent.resolve().is_relative_to(root) or target.resolve() == root:
            continue
        with contextlib.suppress(*UNLINK_ERRORS):
            target.unlink()


def convert(
    input_dir: Path | str,
    output: Path | str,
    options: ConvertOptions | None = None,
    progress: ProgressCallback | None = None,
    **fields: Any,
) -> ConvertSummary:
    """Convert every labelme JSON below ``input_dir`` into a VOC dataset at ``output``.

    ``fields`` are :class:`ConvertOptions` fields, a shorthand for building the options
    (``convert(src, out, labels="labels.txt")``). Files that fail are reported in
    ``summary.failures`` (one line each) and produce no output; the rest convert. A
    re-run skips files whose JSON, image and options are unchanged (``force=True``
    redoes all). Raises ``OptionError`` for bad options and paths, another
    ``SegkitError`` for problems that stop the whole run (unknown labels with
    ``unknown_label="error"``).
    """
    options = dataclasses.replace(options or ConvertOptions(), **fields)
    labels, label_map = options.labels, dict(options.label_map)
    unknown_label, image_format, viz = options.unknown_label, options.image_format, options.viz
    workers, force, fail_fast = options.workers, options.force, options.fail_fast
    max_pixels = options.max_pixels
    if not str(input_dir).strip() or not str(output).strip():
        raise OptionError("an empty path was given; name the input and the output folders")
    input_dir, output = Path(input_dir), Path(output)
    if not input_dir.is_dir():
        problem = "is not a folder" if input_dir.exists() else "input folder not found"
        raise OptionError(f"{printable(str(input_dir))}: {problem}")
    if not is_unicode(str(input_dir.resolve())):
        raise OptionError(
            f"{printable(str(input_dir.resolve()))}: the input folder's path is not valid "
            "UTF-8 (segkit.json records it); rename or move the folder"
        )
    _check_output(input_dir, output, force)
    check_real_folders(output, _OUTPUT_DIRS)
    label_set = resolve_labels(labels)
    _check_label_text(label_set, label_map or {})
    entries = _entries(input_dir)  # listed once: the annotations, and what was passed over
    sources = _annotations(input_dir, entries, output.resolve())
    if not sources:
        raise AnnotationError(f"{input_dir}: no labelme .json files found (searched recursively)")
    sources, misnamed = _split_by_name(input_dir, sources)
    with _claimed(output):
        # Read again under the lock: another run may have changed the folder meanwhile.
        previous_manifest = _check_output(input_dir, output, force)
        summary = _convert_claimed(
            input_dir,
            output,
            sources,
            label_set,
            label_map or {},
            previous_manifest,
            unknown_label=unknown_label,
            image_format=image_format,
            viz=viz,
            workers=workers,
            force=force,
            fail_fast=fail_fast and bool(misnamed),
            max_pixels=max_pixels,
            stop_early=fail_fast,
            progress=progress,
        )
    summary.failures[:0] = misnamed
    summary.skipped = _skipped(entries)
    return summary


def _convert_claimed(
    input_dir: Path,
    output: Path,
    sources: list[Path],
    label_set: LabelSet | None,
    mapping: dict[str, str],
    previous_manifest: dict[str, Any] | None,
    *,
    unknown_label: str,
    image_format: str,
    viz: bool,
    workers: int | None,
    force: bool,
    fail_fast: bool,
    max_pixels: int,
    stop_early: bool,
    progress: ProgressCallback | None,
) -> ConvertSummary:
    """The conversion proper, with ``output`` locked (``fail_fast``: a file already failed).

    Two passes over the files: the first reads their labels (the list of classes, and
    whether any label is unknown, must be settled before a mask is written), the second
    converts. With ``--labels`` into a folder segkit has not written yet, one pass does
    both: each worker reports its file's labels, and should one be unknown (an error),
    everything this run wrote is removed again, which leaves what two passes would
    have left: nothing.
    """
    # --force from another input replaces the dataset: its discovered classes go too.
    replacing = force and _from_other_input(previous_manifest, input_dir)
    relatives = [path.relative_to(input_dir) for path in sources]
    previous_samples = {
        sample.get("source"): sample for sample in (previous_manifest or {}).get("samples", [])
    }
    previous_ids = {
        source: sample["id"]
        for source, sample in previous_samples.items()
        if source is not None and not replacing
    }
    stems = stems_for(relatives, previous_ids)
    owned = _owned_outputs(output, stems)
    foreign = _foreign_outputs(output, stems, owned)
    one_pass = label_set is not None and previous_manifest is None and not owned
    folders_before = {name for name in _OUTPUT_DIRS if (output / name).is_dir()}
    unknown_found = False

    # One pool for both passes: worker start-up is paid once.
    with worker_pool(workers) as pool:
        found: dict[str, list[str]] = {}
        parsed: list[Parsed | None] = [None] * len(sources)
        if not one_pass:
            # Discovered labels become permanent ids, so only files that parse contribute.
            scan = _scan_labels if label_set is not None else _scan_labels_strict
            scans = parallel_map(scan, sources, workers=workers, pool=pool)
            found = _found_labels(relatives, scans, mapping)
            parsed = _within_budget([parse for _, _, parse in scans])
        discovered = label_set is None
        if label_set is None:
            previous_labels = None if replacing else _previous_labels(output, previous_manifest)
            label_set = _discover_labels(found, previous_labels)
        ids = label_set.to_ids()
        if unknown_label == "error" and _has_unknown(found.values(), ids):
            raise _unknown_label_error(found, ids)

        policy = LabelPolicy(ids, mapping, unknown_label)
        options = _options(label_set, policy, image_format, viz)
        note_foreign(output, [f for files in foreign.values() for f in files], "same id")
        # The claim comes before the first output: an interrupted run resumes from it.
        write_claim(
            output,
            _STAGE,
            input=str(input_dir.resolve()),
            pending_ids=stems,
            foreign=sorted(f for files in foreign.values() for f in files),
        )
        fingerprints = Fingerprints(options, ids)
        existing = {
            stem: tuple(path for path in paths if path in owned)
            for stem, paths in existing_outputs_by_stem(output).items()
        }
        jobs = [
            Job(
                source=path,
                source_rel=rel.as_posix(),
                stem=stem,
                output=output,
                policy=policy,
                image_format=image_format,
                viz=viz,
                max_pixels=max_pixels,
                fingerprint=(
                    fingerprints if one_pass else fingerprints.of(found.get(rel.as_posix(), []))
                ),
                previous=None if force else previous_samples.get(rel.as_posix()),
                existing_outputs=existing.get(stem, ()),
                foreign_outputs=tuple(foreign.get(stem, ())),
                parsed=parse,
            )
            for path, rel, stem, parse in zip(sources, relatives, stems, parsed, strict=True)
        ]
        outcomes: list[Outcome | None] = [None] * len(jobs)
        stop = _stop_on_failure if stop_early else _stop_on_write_failure
        if one_pass and unknown_label == "error":
            stop = _or_unknown_label(stop, ids)
        interrupted: BaseException | None = None
        try:
            if not fail_fast:  # a misnamed file already failed: stop before the first
                parallel_map(
                    convert_one,
                    jobs,
                    workers=workers,
                    progress=progress,
                    stop=stop,
                    pool=pool,
                    into=outcomes,
                )
        except Exception:
            raise
        except BaseException as stopped:  # Ctrl-C: record what is finished, as --fail-fast does
            interrupted = stopped
        if one_pass and unknown_label == "error" and interrupted is None:
            reported = (o.labels for o in outcomes if o is not None and o.labels is not None)
            unknown_found = _has_unknown(reported, ids)
    if unknown_found:
        # After the pool has shut down: no worker is still writing.
        _undo_first_outputs(output, jobs, folders_before)
        drop_claim(output, _STAGE)
        scans = parallel_map(_scan_labels, sources, workers=workers)
        raise _unknown_label_error(_found_labels(relatives, scans, mapping), ids)
    # After the pool has shut down: --fail-fast may leave workers finishing files.
    write_failure = next((o.error for o in outcomes if o is not None and o.write_failed), None)
    if write_failure is not None:
        # The disk, not an input: stop, and keep the previous manifest (it still
        # describes the files this run did not get to replace).
        raise DatasetError(f"{write_failure}; the previous segkit.json was kept")
    summary = _finish(
        input_dir,
        output,
        label_set,
        discovered,
        jobs,
        outcomes,
        previous_samples,
        options,
        replacing=replacing,
    )
    if interrupted is not None:
        done = sum(1 for outcome in outcomes if outcome is not None)
        add_note(interrupted, f"{done} of {len(jobs)} files done and recorded in segkit.json")
        raise interrupted  # the claim stays: the next run knows the rest is segkit's
    drop_claim(output, _STAGE)
    return summary


def _found_labels(
    relatives: Sequence[Path], scans: Sequence[_Scan | None], mapping: Mapping[str, str]
) -> dict[str, list[str]]:
    """Each scanned file's labels after ``--map``, by source; files that failed have none."""
    return {
        rel.as_posix(): [mapping.get(label, label) for label in scan[0]]
        for rel, scan in zip(relatives, scans, strict=True)
        if scan is not None and scan[1] is None
    }


def _has_unknown(label_lists: Iterable[list[str]], ids: Mapping[str, int]) -> bool:
    return any(not set(ids).issuperset(labels) for labels in label_lists)


def _or_unknown_label(
    stop: Callable[[Outcome], bool], ids: Mapping[str, int]
) -> Callable[[Outcome], bool]:
    """``stop``, and also stop at a file with a label that is not in ``ids``."""

    def stop_here(outcome: Outcome) -> bool:
        return stop(outcome) or (outcome.labels is not None and _has_unknown([outcome.labels], ids))

    return stop_here


def _undo_first_outputs(output: Path, jobs: Sequence[Job], folders_before: set[str]) -> None:
    """Remove what a one-pass run wrote into a folder segkit had not written before.

    Every file at an output name of this run's ids is this run's there, except the
    ones found in place beforehand (``foreign_outputs``); output folders this run
    made go too, when empty.
    """
    for job in jobs:
        for relative in _stem_outputs(job.stem):
            if relative not in job.foreign_outputs:
                with contextlib.suppress(*UNLINK_ERRORS):
                    (output / relative).unlink()
    for name in _OUTPUT_DIRS:
        if name not in folders_before:
            with contextlib.suppress(OSError):
                (output / name).rmdir()


def _stop_on_failure(outcome: Outcome) -> bool:
    return outcome.error is not None


def _stop_on_write_failure(outcome: Outcome) -> bool:
    return outcome.write_failed


def _kept_after_cancel(
    output: Path, job: Job, previous: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The earlier sample of a file ``--fail-fast`` never reached, if it still holds."""
    if (
        previous is None
        or previous.get("id") != job.stem
        or previous.get("options_fingerprint") != job.fingerprint
        or not all((output / relative).is_file() for relative in _output_paths(previous))
    ):
        return None
    return previous


def _finish(
    input_dir: Path,
    output: Path,
    label_set: LabelSet,
    discovered: bool,
    jobs: list[Job],
    outcomes: list[Outcome | None],
    previous_samples: dict[str | None, dict[str, Any]],
    options: dict[str, Any],
    *,
    replacing: bool,
) -> ConvertSummary:
    summary = ConvertSummary(output, label_set.names, labels_discovered=discovered)
    samples = []
    # Files --fail-fast never reached, or reached while already stopping: their earlier
    # outputs stay listed if still valid; anything else under their id is removed.
    orphans: list[str] = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        if outcome is None:
            previous = previous_samples.get(job.source_rel)
            kept = _kept_after_cancel(output, job, previous)
            if kept is not None:
                samples.append(kept)
            else:
                orphans.extend(p for p in _stem_outputs(job.stem) if p not in job.foreign_outputs)
            continue
        summary.shape_types.update(outcome.shape_types)
        if outcome.error is not None:
            summary.failures.append(outcome.error)
        elif outcome.sample is not None:
            samples.append(outcome.sample)
            summary.up_to_date += outcome.skipped
            summary.converted += not outcome.skipped
    # Outputs of sources that are gone or now fail would misstate the data: remove them.
    kept_sources = {sample["source"] for sample in samples}
    keep = {
        relative.casefold(): relative for sample in samples for relative in _output_paths(sample)
    }
    stale: list[str] = list(orphans)
    for source, sample in previous_samples.items():
        if source not in kept_sources:
            stale.extend(_output_paths(sample))
            summary.removed.append(str(sample.get("id")))
    samples.sort(key=lambda sample: sample["id"])
    summary.images = len(samples)
    totals: Counter[int] = Counter()
    for sample in samples:
        totals.update({int(k): v for k, v in sample["class_pixels"].items()})
    ids = label_set.to_ids()
    names = {value: name for name, value in ids.items()}
    summary.class_pixels = {names.get(i, str(i)): totals[i] for i in sorted(totals)}
    try:
        manifest = load_manifest(output) or {}
    except ManifestError:  # only with --force, which replaces a broken manifest
        manifest = {}
    # A dataset replaced from another input keeps no split or weights of the old one.
    kept = () if replacing else ("splits", "weights")
    keep_sections = {k: v for k, v in manifest.items() if k in kept}
    try:
        _write_dataset_files(
            output, label_set, samples, keep_sections, input_dir, discovered, options
        )
    except (OSError, UnicodeError) as error:
        raise DatasetError(
            f"{output}: cannot write the dataset files ({printable(str(error))})"
        ) from None
    # Only now: until the new manifest is written the old one lists these files.
    _remove_outputs(output, stale, keep)
    return summary


def _write_dataset_files(
    output: Path,
    label_set: LabelSet,
    samples: list[dict[str, Any]],
    keep_sections: dict[str, Any],
    input_dir: Path,
    discovered: bool,
    options: dict[str, Any],
) -> None:
    manifest = new_manifest(
        list(label_set.names),
        samples,
        convert={
            "segkit_version": __version__,
            "input": str(input_dir.resolve()),
            "options": options,
            "options_fingerprint": options_fingerprint(options),
            "labels_discovered": discovered,
        },
        **keep_sections,
    )
    # Encode before writing anything: text that is not UTF-8 (it cannot reach here from
    # the inputs, but an edited manifest may hold it) must not leave half the files new.
    json.dumps(manifest, ensure_ascii=False).encode("utf-8")
    atomic_write_text(output / LABELS_NAME, label_set.labels_txt())
    atomic_write_text(output / CLASS_NAMES_NAME, label_set.class_names_txt())
    save_manifest(output, manifest)
