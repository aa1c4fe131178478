"""Convert one labelme file into its VOC outputs (runs inside a worker process)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import marshal
import pickle
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from numpy.typing import NDArray

from segkit._io import atomic_write_bytes, sha256_bytes, sha256_file
from segkit._text import printable
from segkit.errors import AnnotationError, DatasetError
from segkit.labelme import (
    Annotation,
    LoadedImage,
    Shape,
    check_extent,
    load_image,
    parse_annotation,
    scan_labels,
)
from segkit.rasterize import rasterize
from segkit.voc import (
    CLASS_DIR,
    CLASS_VIZ_DIR,
    IMAGES_DIR,
    OBJECT_DIR,
    mask_png_bytes,
    voc_colormap,
)

JPEG_QUALITY = 95
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@dataclass(frozen=True)
class LabelPolicy:
    """How shape labels become mask values."""

    ids: dict[str, int]
    mapping: dict[str, str] = field(default_factory=dict)
    #: error | ignore (paint 255) | background (paint 0) | skip (drop the shape)
    unknown: str = "error"

    def mapped(self, labels: Iterable[str]) -> list[str]:
        """``labels`` renamed by ``--map``."""
        return [self.mapping.get(label, label) for label in labels]

    def apply(self, shapes: tuple[Shape, ...], where: str) -> tuple[list[Shape], dict[str, int]]:
        """Renamed shapes whose labels all have ids, plus the ids to paint them with."""
        ids = dict(self.ids)
        kept: list[Shape] = []
        for index, shape in enumerate(shapes):
            label = self.mapping.get(shape.label, shape.label)
            if label not in ids:
                if self.unknown == "skip":
                    continue
                if self.unknown == "error":
                    raise AnnotationError(
                        f"{where}shapes[{index}]: label {label!r} is not in the label list"
                    )
                ids[label] = 255 if self.unknown == "ignore" else 0
            if label != shape.label:
                shape = Shape(label, shape.shape_type, shape.points, shape.group_id, shape.mask)
            kept.append(shape)
        return kept, ids


def options_fingerprint(options: Mapping[str, Any]) -> str:
    """A short hash of JSON-ready ``options`` (the manifest records it to detect changes)."""
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Fingerprints:
    """The options fingerprint of one file, from the labels it uses.

    Only the ids of the file's own labels count, so a label appended to the list (say,
    discovered in a new file) leaves every other file up to date. ``options`` are the
    run's (see ``convert_stage``), ``ids`` the label ids; each set of labels is hashed
    once.
    """

    options: dict[str, Any]
    ids: dict[str, int]
    _known: dict[frozenset[str], str] = field(default_factory=dict, compare=False, repr=False)

    def of(self, labels: Iterable[str]) -> str:
        """The fingerprint of a file whose shapes carry ``labels`` (after ``--map``)."""
        key = frozenset(labels)
        known = self._known.get(key)
        if known is None:
            used = {label: self.ids.get(label) for label in sorted(key)}
            rest = {k: v for k, v in self.options.items() if k != "labels"}
            known = self._known[key] = options_fingerprint({**rest, "ids": used})
        return known


@dataclass(frozen=True)
class Parsed:
    """A file's annotation as the label scan parsed it, so its conversion parses it once.

    Held as compact bytes in the main process between the two passes: ``marshal`` of
    its plain fields (strings, numbers, tuples: twice as fast both ways as pickling the
    dataclasses), or a pickle when a mask shape carries a bitmap (a numpy array).
    """

    json_sha256: str
    payload: bytes
    pickled: bool = False

    @classmethod
    def of(cls, annotation: Annotation, raw: bytes) -> Parsed | None:
        """``annotation`` parsed from ``raw``; ``None`` for embedded images (large, and
        cheap to decode again)."""
        if annotation.image_data is not None:
            return None
        if any(shape.mask is not None for shape in annotation.shapes):
            pickled = pickle.dumps(annotation, pickle.HIGHEST_PROTOCOL)
            return cls(sha256_bytes(raw), pickled, pickled=True)
        shapes = [(s.label, s.shape_type, s.points, s.group_id) for s in annotation.shapes]
        plain = (
            str(annotation.path),
            shapes,
            annotation.image_path,
            annotation.image_height,
            annotation.image_width,
        )
        return cls(sha256_bytes(raw), marshal.dumps(plain))

    def annotation(self, raw: bytes, raw_sha256: str) -> Annotation | None:
        """The annotation, if ``raw`` (hashing to ``raw_sha256``) is still what was parsed."""
        if raw_sha256 != self.json_sha256:
            return None
        if self.pickled:
            return pickle.loads(self.payload)
        path, shapes, image_path, height, width = marshal.loads(self.payload)
        return Annotation(
            Path(path),
            tuple(Shape(label, kind, points, group) for label, kind, points, group in shapes),
            image_path,
            None,
            height,
            width,
        )


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to convert one file (picklable)."""

    source: Path
    source_rel: str
    stem: str
    output: Path
    policy: LabelPolicy
    image_format: str
    viz: bool
    max_pixels: int
    #: The file's options fingerprint; ``Fingerprints`` when the labels are not known
    #: yet (one pass, see ``convert_stage``): the worker then computes it and reports
    #: the file's labels in ``Outcome.labels``.
    fingerprint: str | Fingerprints
    previous: dict[str, Any] | None = None
    #: Files in the output folder that an image or visualization of this id may be
    #: (any image suffix); whichever this run does not write is removed.
    existing_outputs: tuple[str, ...] = ()
    #: Files at this id's output names that segkit did not write: never replaced.
    foreign_outputs: tuple[str, ...] = ()
    #: The label scan's parse of the file, when it parsed whole (see ``Parsed``).
    parsed: Parsed | None = None


@dataclass
class Outcome:
    """A worker's answer: a manifest sample entry, or the one-line failure."""

    source_rel: str
    sample: dict[str, Any] | None = None
    error: str | None = None
    skipped: bool = False
    shape_types: Counter[str] = field(default_factory=Counter)
    #: The output folder refused a write (full, read-only): the whole run stops.
    write_failed: bool = False
    #: The file's shape labels after ``--map``, when the job asked (one pass); ``None``
    #: when the file could not be read or its labels not found.
    labels: list[str] | None = None


class _WriteError(DatasetError):
    """The output file system refused a write: no later file would fare better."""


#: Write errors of the whole file system (full, read-only, failing), not of one path.
_FATAL_WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EIO") if hasattr(errno, name)
)


def _fits_uint16(array: NDArray) -> bool:
    """True when every value is an integer in 0..65535 (so a 16-bit PNG holds it exactly)."""
    if array.size == 0:
        return True
    if array.dtype.kind == "f" and not (
        np.isfinite(array).all() and (array == np.floor(array)).all()
    ):
        return False
    return bool(array.min() >= 0 and array.max() <= 65535)


def _image_bytes_and_suffix(loaded: LoadedImage, image_format: str) -> tuple[bytes, str]:
    """Encoded output image; JPEG bytes are copied untouched when nothing forces a re-encode."""
    image = loaded.image
    # load_image only calls a JPEG copyable without an orientation tag: a copied tag
    # would make EXIF-aware readers turn the image away from its masks.
    if image_format == "jpg" and loaded.copyable_jpeg:
        return loaded.source_bytes, ".jpg"
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    buffer = io.BytesIO()
    if image.mode in _SIXTEEN_BIT_MODES:
        # JPEG cannot hold 16-bit microscopy data; keep every bit in a 16-bit PNG, or,
        # for 32-bit or float values a PNG cannot hold, in a TIFF as they are.
        array = np.asarray(image)
        if _fits_uint16(array):
            PIL.Image.fromarray(array.astype(np.uint16)).save(buffer, format="PNG")
            return buffer.getvalue(), ".png"
        image.save(buffer, format="TIFF")
        return buffer.getvalue(), ".tif"
    if has_alpha:
        icc = image.info.get("icc_profile") if image.mode == "RGBA" else None
        image.convert("RGBA").save(buffer, format="PNG", icc_profile=icc)
        return buffer.getvalue(), ".png"
    target_mode = "L" if image.mode in ("L", "1") else "RGB"
    converted = image.convert(target_mode) if image.mode != target_mode else image
    # Keep the colour profile (phone photos are often Display P3) unless the pixels
    # changed colour space; EXIF is dropped on purpose (its orientation is applied).
    icc = image.info.get("icc_profile") if converted is image else None
    if image_format == "png":
        converted.save(buffer, format="PNG", icc_profile=icc)
        return buffer.getvalue(), ".png"
    converted.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0, icc_profile=icc)
    return buffer.getvalue(), ".jpg"


def _visualization(image: PIL.Image.Image, class_mask: NDArray[np.uint8]) -> bytes:
    """JPEG of the image with labelled pixels tinted by their VOC colour."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # Here, not at the top: only --viz of 16-bit images needs it, and every
        # `segkit convert` would import it (and PIL.ImageOps) for nothing.
        from segkit.imagehash import to_gray8

        image = to_gray8(image)  # stretched from min to max, as for the perceptual hash
    blended = np.array(image if image.mode == "RGB" else image.convert("RGB"))
    colours = voc_colormap()
    # Integer halves ((a + b) >> 1 is the float 0.5·a + 0.5·b truncated) in row blocks:
    # the temporaries stay small on a large image, the result is a uint8 copy.
    for top in range(0, blended.shape[0], 256):
        block, ids = blended[top : top + 256], class_mask[top : top + 256]
        mixed = (block.astype(np.uint16) + colours[ids]) >> 1
        np.copyto(block, mixed, where=(ids != 0)[..., None], casting="unsafe")
    buffer = io.BytesIO()
    PIL.Image.fromarray(blended).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _up_to_date(job: Job, json_sha: str, image_sha: str, fingerprint: str) -> bool:
    previous = job.previous
    if previous is None or previous.get("id") != job.stem:
        return False
    same_inputs = (
        previous.get("source_sha256") == json_sha
        and previous.get("image_source_sha256") == image_sha
        and previous.get("options_fingerprint") == fingerprint
    )
    if not same_inputs:
        return False
    # Outputs are checked by content, not name: an interrupted run may have rewritten a
    # mask under other options, or someone edited an image (validate then advises a
    # re-run, which must repair it). Hashing is cheap next to converting.
    checked = ["image", "class_mask", "object_mask", *(["visualization"] if job.viz else [])]
    for key in checked:
        relative = previous.get(key)
        if not _is_output(job.output, relative):
            return False
        if sha256_file(job.output / relative) != previous.get(f"{key}_sha256"):
            return False
    return True


def _is_output(output: Path, relative: object) -> bool:
    return isinstance(relative, str) and bool(relative) and (output / relative).is_file()


def _read_image_source(annotation: Annotation, raw_json: bytes) -> tuple[str, bytes | None]:
    """SHA-256 identifying the image input, and the image file's bytes (read once)."""
    image_file = annotation.image_file()
    if image_file is None:
        return sha256_bytes(raw_json), None  # embedded image: the JSON covers it
    try:
        data = image_file.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return sha256_bytes(raw_json), None  # load_image reports the missing image
    return sha256_bytes(data), data


#: What deleting an output may meet: gone already, a folder in its place, no permission.
UNLINK_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _remove_other_outputs(output: Path, existing: tuple[str, ...], keep: set[str]) -> None:
    """Delete this id's outputs from an earlier run that this run did not write."""
    for relative in existing:
        if relative not in keep:
            with contextlib.suppress(*UNLINK_ERRORS):
                (output / relative).unlink()


def _one_line(text: str) -> str:
    return printable(" ".join(text.split("\n")).replace("\r", " "))


def convert_one(job: Job) -> Outcome:
    """Convert ``job.source``; never raises for bad input, returns the error line instead.

    On failure nothing of this file is left in the output folder (no partial or
    temporary files); an unexpected exception (a bug) is re-raised after that clean-up.
    """
    outcome = Outcome(job.source_rel)
    written: list[Path] = []
    try:
        return _convert(job, outcome, written)
    except AnnotationError as error:
        outcome.error = _one_line(str(error))
    except _WriteError as error:
        outcome.error, outcome.write_failed = _one_line(str(error)), True
    except (DatasetError, OSError) as error:
        outcome.error = _one_line(f"{job.source}: {error}")
    except BaseException:
        _unlink_all(written)
        raise
    _unlink_all(written)
    outcome.sample = None
    return outcome


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(*UNLINK_ERRORS):
            path.unlink()


def _write_outputs(output: Path, files: dict[str, tuple[str, bytes]], written: list[Path]) -> None:
    """Write each output atomically; a path joins ``written`` only once it is replaced.

    So the clean-up after a failed write never deletes an earlier output this run
    did not overwrite.
    """
    for relative, data in files.values():
        try:
            atomic_write_bytes(output / relative, data)
        except OSError as error:
            reason = error.strerror or str(error)
            kind = _WriteError if error.errno in _FATAL_WRITE_ERRNOS else DatasetError
            raise kind(f"cannot write {output / relative} ({reason})") from None
        written.append(output / relative)


def _parse(job: Job, raw: bytes, outcome: Outcome) -> Annotation:
    """``parse_annotation``; in one pass, a file that fails still reports its labels
    (an unknown one stops the whole run, as the separate label scan would)."""
    try:
        return parse_annotation(job.source, raw)
    except AnnotationError:
        if isinstance(job.fingerprint, Fingerprints):
            with contextlib.suppress(AnnotationError):
                labels = scan_labels(job.source, raw)
                outcome.labels = job.policy.mapped(labels)
        raise


def _convert(job: Job, outcome: Outcome, written: list[Path]) -> Outcome:
    """The work of ``convert_one``; raises on bad input, records written paths."""
    raw = job.source.read_bytes()
    json_sha = sha256_bytes(raw)
    annotation = job.parsed.annotation(raw, json_sha) if job.parsed is not None else None
    if annotation is None:  # not parsed by the scan, or changed on disk since
        annotation = _parse(job, raw, outcome)
    fingerprint = job.fingerprint
    if isinstance(fingerprint, Fingerprints):
        outcome.labels = job.policy.mapped(shape.label for shape in annotation.shapes)
        fingerprint = fingerprint.of(outcome.labels)
    outcome.shape_types.update(shape.shape_type for shape in annotation.shapes)
    image_sha, image_data = _read_image_source(annotation, raw)
    if _up_to_date(job, json_sha, image_sha, fingerprint):
        outcome.sample, outcome.skipped = job.previous, True
        return outcome
    shapes, ids = job.policy.apply(annotation.shapes, f"{job.source}: ")
    loaded = load_image(
        annotation,
        max_pixels=job.max_pixels,
        data=image_data,
        need_pixels=job.viz or job.image_format != "jpg",
    )
    check_extent(shapes, loaded.size, where=f"{job.source}: ")
    masks = rasterize(shapes, loaded.size, ids, where=f"{job.source}: ")
    try:
        image_bytes, suffix = _image_bytes_and_suffix(loaded, job.image_format)
    except (ValueError, OSError) as error:
        raise AnnotationError(
            f"{job.source}: cannot encode the {loaded.image.mode} image ({error})"
        ) from None
    class_png = mask_png_bytes(masks.class_image)
    object_png = mask_png_bytes(masks.instance_image)
    files = {
        "image": (f"{IMAGES_DIR}/{job.stem}{suffix}", image_bytes),
        "class_mask": (f"{CLASS_DIR}/{job.stem}.png", class_png),
        "object_mask": (f"{OBJECT_DIR}/{job.stem}.png", object_png),
    }
    if job.viz:
        viz = _visualization(loaded.image, masks.class_mask)
        files["visualization"] = (f"{CLASS_VIZ_DIR}/{job.stem}.jpg", viz)
    in_the_way = [relative for relative, _ in files.values() if relative in job.foreign_outputs]
    if in_the_way:
        raise DatasetError(
            f"{job.output / in_the_way[0]} exists and was not written by segkit; move it "
            "away (segkit never replaces files it did not write, not even with --force)"
        )
    _write_outputs(job.output, files, written)
    _remove_other_outputs(
        job.output, job.existing_outputs, {relative for relative, _ in files.values()}
    )
    counts = masks.class_counts
    outcome.sample = {
        "id": job.stem,
        **{key: relative for key, (relative, _) in files.items()},
        "height": loaded.size[0],
        "width": loaded.size[1],
        "source": job.source_rel,
        "source_sha256": json_sha,
        "image_source": annotation.image_path if annotation.image_data is None else "imageData",
        "image_source_sha256": image_sha,
        "options_fingerprint": fingerprint,
        # A copied image is the very bytes hashed as the source: not hashed twice.
        **{
            f"{key}_sha256": image_sha if data is image_data else sha256_bytes(data)
            for key, (_, data) in files.items()
        },
        "image_reencoded": image_bytes is not loaded.source_bytes,
        "exif_rotated": loaded.needs_reorient,
        "shapes": len(shapes),
        "instances": masks.object_count,
        "object_mask_bits": 8 if masks.instance_image.mode == "P" else 16,
        "class_pixels": {str(i): int(n) for i, n in enumerate(counts) if n},
    }
    return outcome
