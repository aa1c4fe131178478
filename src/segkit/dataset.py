"""Open a VOC-layout dataset folder, written by segkit or by another tool."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import DatasetError
from segkit.manifest import load_manifest
from segkit.voc import (
    CLASS_DIR,
    CLASS_NAMES_NAME,
    IMAGE_SUFFIXES,
    IMAGES_DIR,
    LABELS_NAME,
    OBJECT_DIR,
    SPLITS_DIR,
    read_labels,
    read_split_file,
)


@dataclass(frozen=True)
class Sample:
    """One image of the dataset; paths are ``None`` where the file does not exist."""

    id: str
    image: Path | None
    class_mask: Path | None
    object_mask: Path | None


@dataclass(frozen=True)
class Dataset:
    """A dataset folder: class names in id order, samples sorted by id, the manifest if any."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    manifest: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def ids(self) -> list[str]:
        """Sample ids (VOC stems) in sorted order."""
        return [sample.id for sample in self.samples]

    def sample(self, sample_id: str) -> Sample:
        """The sample called ``sample_id``."""
        for sample in self.samples:
            if sample.id == sample_id:
                return sample
        raise DatasetError(f"{self.root}: no sample {sample_id!r}")

    def split_file(self, name: str) -> Path:
        """Path of ``ImageSets/Segmentation/<name>.txt``."""
        return self.root / SPLITS_DIR / f"{name}.txt"

    def read_split(self, name: str) -> list[str]:
        """Ids listed in a split file (VOC format: one stem per line)."""
        path = self.split_file(name)
        if not path.is_file():
            raise DatasetError(f"{path}: split file not found; run `segkit split` first")
        return read_split_file(path)


def _stems(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
                found.setdefault(path.stem, path)
    return found


def _read_classes(root: Path, manifest: dict[str, Any] | None) -> tuple[str, ...]:
    if manifest is not None:
        return tuple(manifest["classes"])
    for name in (CLASS_NAMES_NAME, LABELS_NAME):
        path = root / name
        if path.is_file():
            return read_labels(path).names
    return ()


def open_dataset(root: Path) -> Dataset:
    """Discover the samples of a VOC folder (``JPEGImages`` + ``SegmentationClass``).

    Class names come from ``segkit.json``, else ``class_names.txt``, else ``labels.txt``;
    a folder with none of them has an empty class tuple (ids are then only numbers).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    manifest = load_manifest(root)
    images = _stems(root / IMAGES_DIR, IMAGE_SUFFIXES)
    class_masks = _stems(root / CLASS_DIR, (".png",))
    object_masks = _stems(root / OBJECT_DIR, (".png",))
    if not images and not class_masks:
        raise DatasetError(
            f"{root}: no {IMAGES_DIR}/ or {CLASS_DIR}/ files; is this a VOC dataset?"
        )
    samples = tuple(
        Sample(stem, images.get(stem), class_masks.get(stem), object_masks.get(stem))
        for stem in sorted(set(images) | set(class_masks))
    )
    return Dataset(root, _read_classes(root, manifest), samples, manifest)
