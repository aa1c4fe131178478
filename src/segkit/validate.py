"""Stage ``validate``, pure half: the checks that find defects which silently spoil training.

Arrays, bytes and plain data in; :class:`Finding` values (or ``(check, detail)``
issues and :class:`ImageCheck` / :class:`MaskCheck` results for one file) out. Nothing
here opens a path: ``segkit.validate_stage`` reads the files (in worker processes)
and hands their bytes to :func:`check_image_bytes` and :func:`check_mask_bytes`.
Images are decoded once, at reduced size for JPEG, for the EXIF and the perceptual
hash; masks are decoded fully because their values are what is checked.

Every finding names a check. The names are stable (scripts may filter on them):

=========================  ========  =====================================================
check                      severity  meaning
=========================  ========  =====================================================
empty-file                 error     a zero-byte image or mask
unreadable                 error     a file that cannot be opened or decoded
truncated                  error     a file that ends early (decode fails, or PNG lacks IEND)
missing-mask               error     an image without a class mask
missing-image              error     a class (or instance) mask without an image
unlabelled-image           warning   images with no mask that no split file names (one
                                     finding for all of them, e.g. VOC detection images)
duplicate-stem             error     two images with one stem (``a.jpg`` and ``a.png``)
size-mismatch              error     mask and image sizes differ
exif-orientation           error     EXIF orientation ≠ 1: loaders that apply EXIF and
                                     loaders that ignore it disagree about the pixels
rgb-mask                   error     an RGB(A) colour mask instead of class ids
mask-encoding              error     a mask that is not palette / 8-bit L (class) or
                                     palette / 8-bit L / 16-bit grayscale (instance)
unknown-class-id           error     class mask values outside 0..K-1 and 255
instance-on-background     error     instance pixels where the class mask is background
instance-class-conflict    error     one instance covering two different classes
all-background             warning   a class mask with no foreground class pixel
all-ignore                 warning   a class mask that is entirely 255
class-never-present        warning   a class that no class mask contains
duplicate-image            warning   byte-identical images (within one split, or unsplit)
split-leakage              error     byte-identical images in different splits
near-duplicate             warning   images within the perceptual-hash distance
split-unknown-stem         error     a split file names a stem that has no files
split-overlap              error     a stem in two of train / val / test (or of one
                                     fold's train / val and test)
split-unassigned           warning   labelled stems in none of train / val / test
                                     (nor in any fold file)
split-trainval-mismatch    error     trainval.txt is not exactly train ∪ val
manifest-mismatch          error     a file (or the class list) differs from segkit.json
manifest-missing-file      error     segkit.json lists a file that is not on disk
not-in-manifest            warning   a sample on disk that segkit.json does not list
no-class-list              warning   no segkit.json / class_names.txt / labels.txt, so
                                     class ids and class presence are not checked
=========================  ========  =====================================================

Paths in findings are relative to the dataset root, with ``/`` separators. Findings
about the dataset as a whole name the file they concern (a split file, the class
list) or ``""``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
from numpy.typing import NDArray

from segkit._io import sha256_bytes
from segkit._pillow import (
    DECODE_ERRORS,
    EXIF_ORIENTATION_TAG,
    decode_error_text,
    pixel_limit_lifted,
)
from segkit._text import plural, short_list
from segkit.imagehash import (
    DEFAULT_MAX_DISTANCE,
    HASH_BITS,
    difference_hash,
    hamming_distance,
    near_duplicate_groups,
)
from segkit.voc import (
    IGNORE_INDEX,
    IGNORE_INDEX_16,
    SPLITS_DIR,
    MaskEncodingError,
    MaskKind,
    mask_ids,
    voc_colormap,
)

ERROR = "error"
WARNING = "warning"

#: Severity of every check, by name (the module docstring explains each one).
SEVERITY: dict[str, str] = {
    "empty-file": ERROR,
    "unreadable": ERROR,
    "truncated": ERROR,
    "missing-mask": ERROR,
    "missing-image": ERROR,
    "unlabelled-image": WARNING,
    "duplicate-stem": ERROR,
    "size-mismatch": ERROR,
    "exif-orientation": ERROR,
    "rgb-mask": ERROR,
    "mask-encoding": ERROR,
    "unknown-class-id": ERROR,
    "instance-on-background": ERROR,
    "instance-class-conflict": ERROR,
    "all-background": WARNING,
    "all-ignore": WARNING,
    "class-never-present": WARNING,
    "duplicate-image": WARNING,
    "split-leakage": ERROR,
    "near-duplicate": WARNING,
    "split-unknown-stem": ERROR,
    "split-overlap": ERROR,
    "split-unassigned": WARNING,
    "split-trainval-mismatch": ERROR,
    "manifest-mismatch": ERROR,
    "manifest-missing-file": ERROR,
    "not-in-manifest": WARNING,
    "no-class-list": WARNING,
}

#: The splits that must partition the labelled stems.
PARTITION_SPLITS = ("train", "val", "test")

_FOLD_VAL = re.compile(r"^fold(\d+)_val$")
_ORIENTATION_NAMES = {
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "transposed",
    6: "rotated 90° clockwise",
    7: "transversed",
    8: "rotated 90° counter-clockwise",
}
_QUARTER_TURNS = frozenset({5, 6, 7, 8})

#: A problem found in one file before it is attached to a path: (check, detail).
Issue = tuple[str, str]


@dataclass(frozen=True, order=True)
class Finding:
    """One defect: its severity, the check that found it, the file and what is wrong."""

    severity: str
    check: str
    file: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """Plain dict for JSON output."""
        return {
            "severity": self.severity,
            "check": self.check,
            "file": self.file,
            "detail": self.detail,
        }


def finding(check: str, file: str, detail: str) -> Finding:
    """A ``Finding`` whose severity is the one registered for ``check``."""
    return Finding(SEVERITY[check], check, file, detail)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then by check name, file and detail (a stable, deterministic order)."""
    return sorted(set(findings), key=lambda f: (f.severity != ERROR, f.check, f.file, f.detail))


def has_errors(findings: Iterable[Finding]) -> bool:
    """Whether any finding is an error (the CLI exits 1 then)."""
    return any(f.severity == ERROR for f in findings)


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _class_label(class_id: int, class_names: Sequence[str]) -> str:
    if class_id == IGNORE_INDEX:
        return "255 (ignore)"
    if class_id < len(class_names):
        return f"{class_id} ({class_names[class_id]})"
    return str(class_id)


# ---------------------------------------------------------------------------
# Pure checks on arrays and plain data
# ---------------------------------------------------------------------------


def class_value_issues(counts: NDArray[np.integer], num_classes: int) -> list[Issue]:
    """Problems in a class mask, given its value histogram (``np.bincount``, length 256).

    ``num_classes`` counts background; 0 means the class list is unknown, and then
    only the all-background / all-ignore checks run.

    >>> counts = np.bincount(np.array([0, 0, 7]), minlength=256)
    >>> class_value_issues(counts, 3)
    [('unknown-class-id', 'values 7 (1 px) are not class ids; known ids are 0..2 and 255 (ignore)')]
    >>> class_value_issues(np.bincount(np.array([255, 255]), minlength=256), 3)[0][0]
    'all-ignore'
    """
    counts = np.asarray(counts)
    issues: list[Issue] = []
    if num_classes > 0:
        present = np.flatnonzero(counts)
        unknown = [int(v) for v in present if v >= num_classes and v != IGNORE_INDEX]
        if unknown:
            values = [f"{v} ({int(counts[v])} px)" for v in unknown]
            issues.append(
                (
                    "unknown-class-id",
                    f"values {short_list(values)} are not class ids; known ids are "
                    f"0..{num_classes - 1} and {IGNORE_INDEX} (ignore)",
                )
            )
    total = int(counts.sum())
    if total == 0:
        return issues
    if int(counts[IGNORE_INDEX]) == total:
        issues.append(("all-ignore", f"every pixel is {IGNORE_INDEX} (ignore)"))
    elif int(counts[1:IGNORE_INDEX].sum()) + int(counts[IGNORE_INDEX + 1 :].sum()) == 0:
        tail = " and ignore" if counts[IGNORE_INDEX] else ""
        issues.append(("all-background", f"the mask holds only background (0){tail} pixels"))
    return issues


def instance_issues(
    class_mask: NDArray[np.integer],
    object_mask: NDArray[np.integer],
    *,
    object_ignore: int = IGNORE_INDEX,
    class_names: Sequence[str] = (),
) -> list[Issue]:
    """Disagreements between a class mask and an instance mask of the same shape.

    An instance pixel (not 0, not ``object_ignore``) on class background is one problem;
    an instance whose pixels carry two different classes (ignoring 0 and 255) another.

    >>> cls = np.array([[0, 1, 1], [0, 2, 0]], dtype=np.uint8)
    >>> obj = np.array([[1, 1, 1], [0, 1, 0]], dtype=np.uint8)
    >>> [check for check, _ in instance_issues(cls, obj)]
    ['instance-on-background', 'instance-class-conflict']
    """
    if class_mask.shape != object_mask.shape:
        raise ValueError(f"shapes differ: {class_mask.shape} vs {object_mask.shape}")
    if class_mask.dtype != np.uint8:
        raise ValueError(f"class mask must be uint8, got {class_mask.dtype}")
    # One joint histogram of (instance, class) pairs answers both questions without
    # boolean passes over the pixels; 8-bit instance ids keep the keys in uint16.
    wide = np.int32 if object_mask.dtype.itemsize > 1 else np.uint16
    keys = (object_mask.astype(wide) << 8 | class_mask).ravel()
    top = int(keys.max(initial=0))
    if top < 1 << 20:
        histogram = np.bincount(keys, minlength=top + 1)
        pairs = np.flatnonzero(histogram)
        counts = histogram[pairs]
    else:
        pairs, counts = np.unique(keys, return_counts=True)
    instances, classes = pairs // 256, pairs % 256
    is_instance = (instances != 0) & (instances != object_ignore)
    issues: list[Issue] = []
    on_background = is_instance & (classes == 0)
    if on_background.any():
        ids = instances[on_background].tolist()
        issues.append(
            (
                "instance-on-background",
                f"{int(counts[on_background].sum())} pixels of instance {short_list(ids)} "
                "lie on background (0) in the class mask",
            )
        )
    labelled = is_instance & (classes != 0) & (classes != IGNORE_INDEX)
    pairs = pairs[labelled]
    instance_ids, first_index, per_instance = np.unique(
        pairs // 256, return_index=True, return_counts=True
    )
    conflicts = []
    for instance_id, start, count in zip(instance_ids, first_index, per_instance, strict=True):
        if count > 1:
            classes = [
                _class_label(int(c), class_names) for c in pairs[start : start + count] % 256
            ]
            conflicts.append(f"instance {instance_id} covers classes {', '.join(classes)}")
    if conflicts:
        issues.append(("instance-class-conflict", short_list(conflicts, 4, sep="; ")))
    return issues


_VOC_KEYS = (voc_colormap().astype(np.uint32) * np.array([1 << 16, 1 << 8, 1], np.uint32)).sum(1)


def rgb_mask_advice(rgb: NDArray[np.uint8]) -> tuple[str, NDArray[np.uint8] | None]:
    """Explain how to turn an RGB colour mask (H, W, 3+) into class ids.

    Returns the advice and, when every colour is a VOC colour-map entry, the class-id
    mask the conversion would give (so class presence can still be counted).
    """
    pixels = rgb[..., :3].astype(np.uint32)
    keys = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    colours = np.unique(keys)
    order = np.argsort(_VOC_KEYS)
    position = np.searchsorted(_VOC_KEYS[order], colours)
    known = (position < len(order)) & (_VOC_KEYS[order][np.minimum(position, 255)] == colours)
    if known.all():
        ids = order[np.searchsorted(_VOC_KEYS[order], keys)].astype(np.uint8)
        found = sorted(order[position].tolist())
        return (
            f"RGB colour mask; all {len(colours)} colours are VOC colour-map entries "
            f"(ids {short_list(found)}), so it converts losslessly: replace each colour "
            "by its colour-map index and save a palette PNG (mode P) or 8-bit L PNG",
            ids,
        )
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        values = np.unique(rgb[..., 0]).tolist()
        return (
            f"RGB mask with three equal channels (values {short_list(values)}); if "
            "these are class ids, save one channel as an 8-bit L or palette PNG",
            None,
        )
    strange = [
        f"({key >> 16}, {(key >> 8) & 255}, {key & 255})" for key in colours[~known].tolist()
    ]
    return (
        f"RGB colour mask with {plural(len(strange), 'colour')} outside the VOC colour map "
        f"(e.g. {short_list(strange, 3)}); map each colour to its class id and save a "
        "palette PNG (mode P, VOC colour map) or 8-bit L PNG; many stray colours mean the "
        "mask was resized or saved with anti-aliasing",
        None,
    )


def geometry_issues(
    image_size: tuple[int, int],
    orientation: int,
    mask_sizes: Mapping[str, tuple[int, int]],
    *,
    labels_in_oriented_frame: bool = False,
) -> list[tuple[str, str, str]]:
    """Size and EXIF-orientation problems of one image and its masks.

    ``image_size`` is the stored (width, height); ``mask_sizes`` maps each mask's file to
    its (width, height). A mask matching the image after an EXIF quarter turn is not a
    size mismatch but is reported once, as ``exif-orientation``, with the frame the mask
    is in. ``labels_in_oriented_frame`` says the masks were drawn in the EXIF-oriented
    frame (true for segkit convert, as for labelme) when sizes cannot tell.
    Returns ``(check, file, detail)`` triples; the EXIF one has ``file == ""`` (the image).
    """
    width, height = image_size
    turned = orientation in _QUARTER_TURNS
    oriented = (height, width) if turned else (width, height)
    issues: list[tuple[str, str, str]] = []
    frames: set[str] = set()
    for mask_file, mask_size in mask_sizes.items():
        if tuple(mask_size) == (width, height):
            frames.add("stored")
        elif turned and tuple(mask_size) == oriented:
            frames.add("oriented")
        else:
            after = f" ({_size(oriented)} after EXIF rotation)" if turned else ""
            issues.append(
                (
                    "size-mismatch",
                    mask_file,
                    f"mask is {_size(mask_size)} but its image is "
                    f"{_size(image_size)}{after} (width x height)",
                )
            )
    if orientation in _ORIENTATION_NAMES:
        if not turned and labels_in_oriented_frame:
            frames = {"oriented"}
        elif not turned:
            frames = set()
        issues.append(("exif-orientation", "", _orientation_detail(orientation, frames)))
    return issues


def _orientation_detail(orientation: int, frames: set[str]) -> str:
    head = f"EXIF orientation {orientation} ({_ORIENTATION_NAMES[orientation]}); "
    fix = (
        "; re-save the image with the orientation applied to its pixels and the tag "
        "removed (e.g. PIL.ImageOps.exif_transpose), transforming the mask the same way "
        "if it is in the stored frame"
    )
    if frames == {"oriented"}:
        return (
            head + "the mask is in the EXIF-oriented frame (as labelme shows the image), "
            "so loaders that ignore EXIF (PIL.Image.open, torchvision VOCSegmentation) "
            "pair it with unrotated pixels" + fix
        )
    if frames == {"stored"}:
        return (
            head + "the mask is in the stored pixel frame, so loaders that apply EXIF "
            "(OpenCV imread, exif_transpose) pair it with rotated pixels" + fix
        )
    return (
        head + "the sizes cannot tell which frame the mask is in, but loaders that apply "
        "EXIF and loaders that ignore it see different pixels for the same mask" + fix
    )


def split_findings(
    existing_ids: Collection[str],
    splits: Mapping[str, Sequence[str]],
    *,
    labelled_ids: Collection[str] | None = None,
) -> list[Finding]:
    """Problems in split lists (name → stems, as in ``ImageSets/Segmentation/<name>.txt``).

    Every list is checked for stems with no files (not in ``existing_ids``);
    ``train``/``val``/``test`` must not overlap and must cover ``labelled_ids`` (the
    stems with a class mask; default: all existing); ``trainval`` must equal
    ``train ∪ val``.
    """
    known = set(existing_ids)
    labelled = known if labelled_ids is None else set(labelled_ids)
    findings: list[Finding] = []

    def path(name: str) -> str:
        return f"{SPLITS_DIR}/{name}.txt"

    for name in sorted(splits):
        unknown = sorted(set(splits[name]) - known)
        if unknown:
            findings.append(
                finding(
                    "split-unknown-stem",
                    path(name),
                    f"{plural(len(unknown), 'stem')} with no image or mask: {short_list(unknown)}",
                )
            )
    partition = [name for name in PARTITION_SPLITS if name in splits]
    disjoint = disjoint_split_groups(splits)
    reported: set[tuple[str, str]] = set()
    for names in disjoint:
        for index, first in enumerate(names):
            for second in names[index + 1 :]:
                both = sorted(set(splits[first]) & set(splits[second]))
                if both and (first, second) not in reported:
                    reported.add((first, second))
                    findings.append(
                        finding(
                            "split-overlap",
                            path(second),
                            f"in both {first} and {second}: {short_list(both)} "
                            f"({plural(len(both), 'stem')})",
                        )
                    )
    if partition:
        assigned_from = {name for group in disjoint for name in group}
        assigned = set().union(*(splits[name] for name in assigned_from))
        unassigned = sorted(labelled - assigned)
        if unassigned:
            findings.append(
                finding(
                    "split-unassigned",
                    SPLITS_DIR,
                    f"{plural(len(unassigned), 'labelled stem')} in none of "
                    f"{'/'.join(sorted(assigned_from))}: {short_list(unassigned)}; "
                    "re-run segkit split to place them",
                )
            )
    if "trainval" in splits and ("train" in splits or "val" in splits):
        expected = set(splits.get("train", ())) | set(splits.get("val", ()))
        actual = set(splits["trainval"])
        problems = []
        if expected - actual:
            problems.append(f"lacks {short_list(sorted(expected - actual))}")
        if actual - expected:
            problems.append(f"has extra {short_list(sorted(actual - expected))}")
        if problems:
            findings.append(
                finding(
                    "split-trainval-mismatch",
                    path("trainval"),
                    f"trainval is not train ∪ val: it {' and '.join(problems)}",
                )
            )
    return findings


def disjoint_split_groups(splits: Collection[str]) -> list[list[str]]:
    """Split files that must not share a stem: train / val / test, and, for
    cross-validation folds as segkit split writes them, each fold's train and val
    together with the held-out test list."""
    groups = [[name for name in PARTITION_SPLITS if name in splits]]
    for name in sorted(splits):
        match = _FOLD_VAL.match(name)
        if match and f"fold{match.group(1)}_train" in splits:
            held = ["test"] if "test" in splits else []
            groups.append([f"fold{match.group(1)}_train", name, *held])
    return groups


def _where(
    ids: Iterable[str],
    split_of: Mapping[str, Collection[str]],
    disjoint: Sequence[Sequence[str]] = (PARTITION_SPLITS,),
) -> list[str]:
    """The splits of one disjoint group that copies among ``ids`` span (empty if none)."""
    ids = list(ids)
    for group in disjoint:
        names = sorted({n for i in ids for n in split_of.get(i, ()) if n in group})
        if len(names) > 1:
            return names
    return []


def duplicate_findings(
    image_sha256: Mapping[str, str],
    files: Mapping[str, str],
    split_of: Mapping[str, Collection[str]],
    disjoint: Sequence[Sequence[str]] = (PARTITION_SPLITS,),
) -> list[Finding]:
    """Byte-identical images: a warning, or ``split-leakage`` when they span splits.

    ``image_sha256`` maps sample id → content hash, ``files`` id → image path and
    ``split_of`` id → the split files naming it; ``disjoint`` lists the groups of
    split files that must not share an image (``disjoint_split_groups``). One finding
    per group, on its first file.
    """
    groups: dict[str, list[str]] = {}
    for sample_id, digest in image_sha256.items():
        groups.setdefault(digest, []).append(sample_id)
    findings = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda m: files[m])
        others = short_list([files[m] for m in members[1:]])
        splits = _where(members, split_of, disjoint)
        if splits:
            where = ", ".join(
                f"{files[m]} in {'/'.join(sorted(split_of.get(m, ()))) or 'no split'}"
                for m in members
            )
            findings.append(
                finding(
                    "split-leakage",
                    files[members[0]],
                    f"identical images in splits {', '.join(splits)}: {where}; "
                    "keep one copy or put all in one split",
                )
            )
        else:
            findings.append(
                finding("duplicate-image", files[members[0]], f"byte-identical to {others}")
            )
    return findings


def near_duplicate_findings(
    dhashes: Mapping[str, int],
    image_sha256: Mapping[str, str],
    files: Mapping[str, str],
    split_of: Mapping[str, Collection[str]],
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    disjoint: Sequence[Sequence[str]] = (PARTITION_SPLITS,),
) -> list[Finding]:
    """Groups of near-identical images (warnings): linked pairs have dHashes within
    ``max_distance`` bits and, for ``imagehash.ImageHash`` values, thumbnails that
    confirm the same picture (see ``imagehash.near_duplicate_groups``).

    Byte-identical copies are collapsed to one first, since ``duplicate_findings``
    reports them; a group is reported only if it holds two different files.
    """
    representative: dict[str, str] = {}
    for sample_id in sorted(dhashes, key=lambda s: files[s]):
        representative.setdefault(image_sha256.get(sample_id, sample_id), sample_id)
    hashes = {sample_id: dhashes[sample_id] for sample_id in representative.values()}
    findings = []
    for group in near_duplicate_groups(hashes, max_distance):
        members = sorted(group, key=lambda m: files[m])
        first = hashes[members[0]]
        others = short_list(
            [f"{files[m]} ({hamming_distance(first, hashes[m])} bits apart)" for m in members[1:]]
        )
        splits = _where(members, split_of, disjoint)
        across = f"; they span splits {', '.join(splits)}" if splits else ""
        findings.append(
            finding(
                "near-duplicate",
                files[members[0]],
                f"near-identical to {others} by perceptual hash (limit {max_distance} of "
                f"{HASH_BITS} bits){across}",
            )
        )
    return findings


def class_presence_findings(
    present: Collection[int],
    class_names: Sequence[str],
    class_file: str,
    *,
    images_with_ignore: int = 0,
) -> list[Finding]:
    """A warning for each class (other than background) that no class mask contains."""
    findings = []
    for class_id in range(1, len(class_names)):
        if class_id in present:
            continue
        hint = ""
        if len(class_names) == 2 and images_with_ignore:
            hint = (
                f"; {images_with_ignore} masks contain 255 (ignore): were binary masks "
                "saved as 0/255 instead of 0/1?"
            )
        findings.append(
            finding(
                "class-never-present",
                class_file,
                f"class {class_id} ({class_names[class_id]}) appears in no class mask{hint}",
            )
        )
    return findings


# ---------------------------------------------------------------------------
# Checks on one file's bytes
# ---------------------------------------------------------------------------


#: A whole IEND chunk: zero length, type, CRC. Bytes after it are ignored by decoders.
_PNG_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _looks_truncated(data: bytes) -> bool:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _PNG_IEND_CHUNK not in data
    if data.startswith(b"\xff\xd8"):
        return b"\xff\xd9" not in data[-64:]
    return False


def _decode_failure(data: bytes, error: BaseException) -> Issue:
    if _looks_truncated(data):
        detail = decode_error_text(error)
        return ("truncated", f"the file ends early ({detail}); copy or export it again")
    return ("unreadable", f"cannot decode ({decode_error_text(error)})")


@dataclass(frozen=True)
class _Mask:
    size: tuple[int, int]
    mode: str
    array: NDArray[Any]
    #: Value counts for 8-bit masks (Pillow's C histogram is ~3x faster than bincount).
    histogram: NDArray[np.int64] | None


def _decode_mask(data: bytes) -> _Mask | Issue:
    try:
        with pixel_limit_lifted(), PIL.Image.open(io.BytesIO(data)) as image:
            image.load()
            histogram = (
                np.array(image.histogram(), dtype=np.int64) if image.mode in ("P", "L") else None
            )
            mask = _Mask(image.size, image.mode, np.asarray(image), histogram)
    except DECODE_ERRORS as error:
        return _decode_failure(data, error)
    if _looks_truncated(data):
        return ("truncated", "the PNG has no IEND (end) chunk; copy or export it again")
    return mask


@dataclass(frozen=True)
class ImageCheck:
    """What the bytes of one image showed: problems, plus what later checks need.

    ``size`` is read from the header; ``orientation`` and ``dhash`` only when the
    whole image decoded (the geometry and near-duplicate checks run only then).
    """

    issues: tuple[Issue, ...]
    sha256: str
    size: tuple[int, int] | None = None
    orientation: int | None = None
    dhash: int | None = None


@dataclass(frozen=True)
class MaskCheck:
    """What the bytes of one class or instance mask showed.

    ``array`` holds the ids when the encoding is usable; ``ignore`` is the instance
    mask's ignore value (255, or 65535 for 16-bit); ``class_ids`` the values present
    in a class mask (also read from an RGB mask whose colours are VOC's).
    """

    issues: tuple[Issue, ...]
    size: tuple[int, int] | None = None
    array: NDArray[Any] | None = None
    ignore: int | None = None
    class_ids: frozenset[int] = frozenset()


def check_image_bytes(data: bytes) -> ImageCheck:
    """Decode one image file's bytes: truncation, size, EXIF orientation, perceptual hash."""
    sha256 = sha256_bytes(data)
    size = dhash = None
    try:
        with pixel_limit_lifted(), PIL.Image.open(io.BytesIO(data)) as image:
            size = image.size  # from the header, before draft() may shrink it
            # One decode serves three checks: it proves the file is whole, exposes an
            # EXIF block stored after the pixels (PNG), and feeds the perceptual hash,
            # computed exactly as segkit.imagehash.hash_image_file does (JPEG at 1/8 scale).
            image.draft("L", (64, 64))
            image.load()
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
            dhash = difference_hash(PIL.ImageOps.exif_transpose(image))
    except DECODE_ERRORS as error:
        return ImageCheck((_decode_failure(data, error),), sha256, size, None, dhash)
    orientation = orientation if isinstance(orientation, int) else 1
    issues: tuple[Issue, ...] = ()
    if data.startswith(b"\x89PNG") and _looks_truncated(data):
        issues = (("truncated", "the PNG has no IEND (end) chunk; copy or export it again"),)
    return ImageCheck(issues, sha256, size, orientation, dhash)


def check_mask_bytes(data: bytes, kind: MaskKind, num_classes: int) -> MaskCheck:
    """Decode a class or instance mask's bytes; its size, ids (and class ids), problems."""
    mask = _decode_mask(data)
    if isinstance(mask, tuple):
        return MaskCheck((mask,))
    if mask.mode in ("RGB", "RGBA"):
        advice, ids = rgb_mask_advice(mask.array)
        if kind == "instance":
            advice = advice.replace("RGB colour mask", "RGB colour instance mask", 1)
            return MaskCheck((("rgb-mask", advice),), mask.size)
        present: frozenset[int] = frozenset()
        if ids is not None:
            counts = np.bincount(ids.ravel(), minlength=256)
            present = frozenset(int(v) for v in np.flatnonzero(counts))
        return MaskCheck((("rgb-mask", advice),), mask.size, class_ids=present)
    try:
        array = mask_ids(mask.array, mask.mode, kind)
    except MaskEncodingError as error:
        return MaskCheck((("mask-encoding", str(error)),), mask.size)
    if kind == "instance":
        ignore = IGNORE_INDEX if array.dtype == np.uint8 else IGNORE_INDEX_16
        return MaskCheck((), mask.size, array, ignore)
    counts = mask.histogram
    if counts is None or len(counts) != 256:  # never expected for P / L, but stay correct
        counts = np.bincount(array.ravel(), minlength=256)
    present = frozenset(int(v) for v in np.flatnonzero(counts))
    return MaskCheck(
        tuple(class_value_issues(counts, num_classes)), mask.size, array, None, present
    )
