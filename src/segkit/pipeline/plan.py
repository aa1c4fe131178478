"""Which stages of ``segkit run`` are up to date: keys, digests and the state file.

A stage's *key* is what its outputs depend on: its options (less those that change
nothing, such as ``workers``) and a digest of each input it reads, taken from disk
(the labelme folder's file list, sizes and modification times; the dataset's classes
and samples; the split files; ``weights.json``; the checkpoint). The run records each
stage's key in ``OUT/.segkit-run-state.json`` before the stage starts and marks it
done when it ends; a stage whose key, record or outputs differ runs again, and the
differences are its reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segkit._io import atomic_write_json, sha256_file

STATE_NAME = ".segkit-run-state.json"
FORMAT = "segkit-run-state"
#: Options that never change a stage's outputs.
NEUTRAL = frozenset({"workers", "force", "command"})
#: What each input of a key is, in a reason.
INPUTS = {
    "input": "the labelme folder changed",
    "labels": "the labels file changed",
    "dataset": "the dataset changed (convert)",
    "splits": "the splits changed (split)",
    "weights": "weights.json changed (weights)",
    "model": "the model changed (train)",
    "images": "the --predict folder changed",
    "keep_going": "--keep-going changed",
}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def folder_fingerprint(folder: Path, exclude: Path | None = None) -> str:
    """Hash of every file's relative path, size and modification time below ``folder``
    (``exclude`` and what lies below it left out); cheap, as ``make`` decides."""
    entries = []
    for top, dirs, files in os.walk(folder):
        top_path = Path(top)
        if exclude is not None:
            dirs[:] = [d for d in dirs if (top_path / d).resolve() != exclude]
        dirs.sort()
        for name in sorted(files):
            path = top_path / name
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return _hash(entries)


def file_fingerprint(path: Path) -> str | None:
    """Size and modification time of one file (None when it is missing)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return _hash([stat.st_size, stat.st_mtime_ns])


def dataset_digest(dataset: Path) -> str | None:
    """The classes and samples of the dataset's manifest: what convert produced."""
    try:
        manifest = json.loads((dataset / "segkit.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return _hash({key: manifest.get(key) for key in ("classes", "samples")})


def splits_digest(dataset: Path) -> str | None:
    """The split files' names and contents."""
    folder = dataset / "ImageSets" / "Segmentation"
    if not folder.is_dir():
        return None
    return _hash({p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))})


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes (None when it is missing)."""
    return sha256_file(path) if Path(path).is_file() else None


def options_key(options: Mapping[str, Any], ignore: frozenset[str] = NEUTRAL) -> dict[str, Any]:
    """An options dict less the options that change nothing, JSON-normalised."""
    kept = {k: v for k, v in options.items() if k not in ignore}
    return json.loads(json.dumps(kept, sort_keys=True, default=str))


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Why a stage with key ``new`` is stale against the recorded ``old`` (empty: it is not).

    >>> changes({"options": {"lr": 0.1}, "dataset": "a"}, {"options": {"lr": 0.2}, "dataset": "a"})
    ['options changed: lr 0.1 → 0.2']
    """
    if old is None:
        return ["not run before"]
    reasons = []
    old_options, new_options = old.get("options", {}), new.get("options", {})
    names = sorted(
        k for k in {*old_options, *new_options} if old_options.get(k) != new_options.get(k)
    )
    if names:
        shown = [f"{k} {old_options.get(k)!r} → {new_options.get(k)!r}" for k in names[:4]]
        more = f" (and {len(names) - 4} more)" if len(names) > 4 else ""
        reasons.append(f"options changed: {', '.join(shown)}{more}".replace("'", ""))
    for name in sorted({*old, *new} - {"options"}):
        if old.get(name) != new.get(name):
            reasons.append(INPUTS.get(name, f"{name} changed"))
    return reasons


class RunState:
    """The state file: per stage its key, whether it finished, its summary and time."""

    def __init__(self, output: Path) -> None:
        self.path = output / STATE_NAME
        self.stages: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if isinstance(data, dict) and data.get("format") == FORMAT:
            stages = data.get("stages")
            if isinstance(stages, dict):
                self.stages = {k: v for k, v in stages.items() if isinstance(v, dict)}

    def record(self, stage: str) -> dict[str, Any] | None:
        return self.stages.get(stage)

    def start(self, stage: str, key: dict[str, Any]) -> None:
        """Record that ``stage`` starts with ``key`` (before its first output)."""
        self.stages[stage] = {"key": key, "done": False}
        self._save()

    def finish(self, stage: str, summary: dict[str, Any], seconds: float) -> None:
        self.stages[stage].update(done=True, summary=summary, seconds=seconds)
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.path, {"format": FORMAT, "stages": self.stages})


def stale_reasons(
    record: Mapping[str, Any] | None, key: Mapping[str, Any], outputs: list[Path]
) -> list[str]:
    """Why a stage must run (empty: up to date)."""
    if record is None:
        return ["not run before"]
    reasons = changes(record.get("key"), key)
    if not reasons and not record.get("done"):
        reasons = ["interrupted"]
    missing = [path for path in outputs if not path.exists()]
    if not reasons and missing:
        reasons = [f"{missing[0]} is missing"]
    return reasons
