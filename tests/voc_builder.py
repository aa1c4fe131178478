"""One builder for hand-made VOC dataset folders, shared by the validate, split and weights tests.

Each test module decides what its masks and pictures look like; this module only lays
them out the way ``segkit convert`` (and labelme2voc) would: ``JPEGImages/<id>.jpg``,
palette PNG ``SegmentationClass/`` and ``SegmentationObject/``, ``class_names.txt``,
split files and, when asked, a ``segkit.json`` listing the samples.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from segkit.manifest import new_manifest, save_manifest
from segkit.voc import encode_palette_png

IMAGES = "JPEGImages"
CLASSES = "SegmentationClass"
OBJECTS = "SegmentationObject"
SPLITS = "ImageSets/Segmentation"


def jpeg_bytes(pixels: np.ndarray, **save: Any) -> bytes:
    """``pixels`` (H×W×3 uint8) as JPEG; ``save`` goes to Pillow (quality, exif, ...)."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="JPEG", **save)
    return buffer.getvalue()


def write_voc(
    root: Path,
    class_masks: Mapping[str, np.ndarray],
    *,
    images: Mapping[str, np.ndarray | bytes] | None = None,
    object_masks: Mapping[str, np.ndarray] | None = None,
    classes: Sequence[str] | None = None,
    splits: Mapping[str, Sequence[str]] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write a VOC folder at ``root`` and return it.

    ``class_masks`` / ``object_masks`` map ids to uint8 arrays (written as palette PNG);
    ``images`` map ids to a picture (pixels, saved as JPEG) or ready file bytes.
    ``classes`` becomes ``class_names.txt``; ``splits`` maps a split name to its ids.
    ``manifest`` (the ``convert`` section) adds a ``segkit.json`` listing every sample.
    The three sample folders are always created, so an empty one is still there.
    """
    for sub in (IMAGES, CLASSES, OBJECTS):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sample_id, picture in (images or {}).items():
        data = picture if isinstance(picture, bytes) else jpeg_bytes(picture)
        (root / IMAGES / f"{sample_id}.jpg").write_bytes(data)
    for folder, masks in ((CLASSES, class_masks), (OBJECTS, object_masks or {})):
        for sample_id, mask in masks.items():
            (root / folder / f"{sample_id}.png").write_bytes(encode_palette_png(mask))
    if classes is not None:
        (root / "class_names.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    if splits:
        (root / SPLITS).mkdir(parents=True, exist_ok=True)
        for name, members in splits.items():
            text = "".join(f"{member}\n" for member in members)
            (root / SPLITS / f"{name}.txt").write_text(text, encoding="utf-8")
    if manifest is not None:
        samples = [
            {"id": s, "image": f"{IMAGES}/{s}.jpg", "class_mask": f"{CLASSES}/{s}.png"}
            for s in class_masks
        ]
        save_manifest(root, new_manifest(list(classes or ()), samples, convert=dict(manifest)))
    return root
