"""The ``segkit.json`` manifest each stage reads and extends (nnU-Net's dataset.json idea)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segkit import __version__
from segkit._io import atomic_write_json
from segkit.errors import ManifestError
from segkit.voc import IGNORE_INDEX, MANIFEST_NAME, voc_colormap

SCHEMA_VERSION = 1
_REQUIRED_KEYS = {"schema_version": int, "classes": list, "samples": list}
_SAMPLE_KEYS = ("id", "image", "class_mask")
_OPTIONAL_SAMPLE_KEYS = {"source": str, "class_pixels": dict, "object_mask": str}
#: Top-level sections, one per stage.
_SECTIONS = ("convert", "splits", "weights")


def manifest_path(root: Path) -> Path:
    """Where the manifest of the dataset at ``root`` lives."""
    return Path(root) / MANIFEST_NAME


def new_manifest(classes: list[str], samples: list[dict[str, Any]], **sections: Any) -> dict:
    """A fresh manifest dict with the current schema and segkit version."""
    return {
        "schema_version": SCHEMA_VERSION,
        "segkit_version": __version__,
        "classes": list(classes),
        "ignore_index": IGNORE_INDEX,
        "palette": "voc",
        # The colours the masks show each class in (and predict will draw), by id.
        "colors": {
            name: voc_colormap(len(classes))[index].tolist() for index, name in enumerate(classes)
        },
        "samples": samples,
        **sections,
    }


def load_manifest(root: Path) -> dict[str, Any] | None:
    """Read and check the manifest of ``root``; ``None`` when the folder has none."""
    path = manifest_path(root)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: top level must be an object")
    for key, kind in _REQUIRED_KEYS.items():
        if not isinstance(data.get(key), kind):
            raise ManifestError(f"{path}: key {key!r} missing or not a {kind.__name__}")
    if data["schema_version"] > SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: schema_version {data['schema_version']} is newer than this segkit "
            f"understands ({SCHEMA_VERSION}); upgrade segkit"
        )
    if not all(isinstance(name, str) for name in data["classes"]):
        raise ManifestError(f"{path}: 'classes' must list class names (strings)")
    if len(data["classes"]) > IGNORE_INDEX:
        raise ManifestError(
            f"{path}: {len(data['classes'])} classes; at most {IGNORE_INDEX} fit a PNG mask"
        )
    for section in _SECTIONS:
        if section in data and not isinstance(data[section], dict):
            raise ManifestError(f"{path}: {section!r} must be an object")
    for index, sample in enumerate(data["samples"]):
        if not isinstance(sample, dict) or any(
            not isinstance(sample.get(key), str) for key in _SAMPLE_KEYS
        ):
            raise ManifestError(f"{path}: samples[{index}] needs string keys {_SAMPLE_KEYS}")
        for key, kind in _OPTIONAL_SAMPLE_KEYS.items():
            if key in sample and not isinstance(sample[key], kind):
                raise ManifestError(f"{path}: samples[{index}].{key} must be a {kind.__name__}")
    return data


def save_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    atomic_write_json(manifest_path(root), manifest)


def update_manifest(root: Path, **sections: Any) -> dict[str, Any]:
    """Set top-level ``sections`` in the manifest of ``root`` (creating a minimal one if absent).

    Stages own one key each (``splits``, ``weights``, ...), so read-modify-write of
    whole sections never loses another stage's data.
    """
    manifest = load_manifest(root)
    if manifest is None:
        raise ManifestError(f"{manifest_path(root)}: no manifest; open the dataset first")
    manifest.update(sections)
    manifest["segkit_version"] = __version__
    save_manifest(root, manifest)
    return manifest
