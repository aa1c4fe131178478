"""What segkit owns in an output folder, and claiming a folder before writing to it.

segkit deletes or replaces only files it wrote: those its records list (the
manifest, ``weights.json``), those a claim lists (below), and its own temporary
files (``.<name>.<8 hex>.tmp``). Everything else in an output folder is the
user's: kept, and named once in a ``SegkitNote`` warning when it is in the way.

A *claim* is a small JSON file (``.segkit-<stage>-claim.json``) a stage writes
before its first output, listing what it is about to write. A run that completes
writes its real record and drops the claim; a run that was interrupted or killed
leaves it, so the next run knows those files are segkit's (and resumes without
``--force``).

Stages that write use :func:`output_folder`, which creates the folder, refuses
symlinked sub-folders, takes the one-writer lock (:mod:`segkit.lock`) and removes
the temporary files an earlier run left::

    with output_folder(run_dir, subfolders=("checkpoints",)):
        ...  # write with segkit._io's atomic helpers
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from segkit._io import atomic_write_json, remove_temp_files, write_error_reason
from segkit._text import short_list
from segkit.errors import DatasetError, OptionError, SegkitNote
from segkit.lock import LOCK_NAME, folder_lock

#: Files of segkit's own bookkeeping, never outputs and never foreign.
BOOKKEEPING_PREFIX = ".segkit"


def claim_path(folder: Path, stage: str) -> Path:
    """Where ``stage`` records what it is about to write in ``folder``."""
    return Path(folder) / f"{BOOKKEEPING_PREFIX}-{stage}-claim.json"


def read_claim(folder: Path, stage: str) -> dict[str, Any] | None:
    """The claim an unfinished ``stage`` run left in ``folder`` (``None``: none, or unreadable)."""
    try:
        data = json.loads(claim_path(folder, stage).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("stage") == stage else None


def write_claim(folder: Path, stage: str, **record: Any) -> None:
    """Record, before the first output, what ``stage`` is about to write in ``folder``."""
    try:
        atomic_write_json(claim_path(folder, stage), {"stage": stage, **record})
    except OSError as error:
        raise DatasetError(write_error_reason(error)) from None


def drop_claim(folder: Path, stage: str) -> None:
    """Forget the claim once the stage's own record lists everything it wrote."""
    with contextlib.suppress(FileNotFoundError):
        claim_path(folder, stage).unlink()


def is_bookkeeping(name: str) -> bool:
    """segkit's lock and claim files: neither outputs nor the user's."""
    return name == LOCK_NAME or name.startswith(f"{BOOKKEEPING_PREFIX}-")


def check_real_folders(root: Path, subfolders: Iterable[str]) -> None:
    """Refuse output sub-folders (or any folder on the way to them) that are symbolic links.

    Writing or deleting through a link would touch files outside the output folder,
    possibly the inputs themselves.
    """
    root = Path(root)
    for sub in subfolders:
        path = root
        for part in Path(sub).parts:
            path = path / part
            if path.is_symlink():
                raise OptionError(
                    f"{path}: is a symbolic link (to {os.readlink(path)}); segkit never writes "
                    "or deletes through links. Replace it with a real folder"
                )


def check_apart(
    output: Path, inputs: Mapping[str, Path | None], *, may_hold_output: Iterable[str] = ()
) -> None:
    """Refuse an output folder that is, contains or lies inside one of the ``inputs``.

    ``inputs`` maps what each input is ("input folder", "dataset") to its path. Writing
    into an input, or reading an input that holds the outputs, would mix the two on the
    next run (and ``--force`` would delete what segkit wrote among the user's files).
    The inputs named in ``may_hold_output`` may contain the output folder (a report's
    default folder inside its run folder); they still may not lie inside it.
    """
    out = Path(output).resolve()
    allowed = set(may_hold_output)
    for what, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if source == out:
            raise OptionError(f"{output}: the output folder must differ from the {what}")
        if source.is_relative_to(out):
            raise OptionError(
                f"{path}: the {what} lies inside the output folder {output}; "
                "write the outputs somewhere else"
            )
        if out.is_relative_to(source) and what not in allowed:
            raise OptionError(
                f"{output}: the output folder lies inside the {what} {path}; "
                "choose an output folder outside it"
            )


def note_foreign(folder: Path, names: Sequence[str], why: str) -> None:
    """Name, once, the files segkit did not write and therefore left alone."""
    if names:
        warnings.warn(
            f"{folder}: {len(names)} file(s) segkit did not write were kept ({why}): "
            f"{short_list(sorted(names))}",
            SegkitNote,
            stacklevel=2,
        )


@contextlib.contextmanager
def output_folder(
    folder: Path, *, subfolders: Sequence[str] = (), create: bool = True
) -> Iterator[Path]:
    """Create ``folder`` (unless not ``create``: then it must exist), lock it for this
    process, and clean what an earlier run left.

    Refuses symlinked ``subfolders`` (``OptionError``), a folder another segkit process
    writes (``FolderBusyError``) and an unwritable folder (``DatasetError``, one line);
    removes segkit's stale temporary files in the folder and the ``subfolders``.
    Yields the folder; the lock is released when the block ends, however it ends.
    """
    folder = Path(folder)
    check_real_folders(folder, subfolders)
    if not create and not folder.is_dir():
        raise DatasetError(f"{folder}: dataset folder not found")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(
            f"{folder}: cannot create the output folder ({error.strerror})"
        ) from None
    with folder_lock(folder):
        for path in (folder, *(folder / sub for sub in subfolders)):
            with contextlib.suppress(OSError):  # read-only: the first write reports it
                remove_temp_files(path)
        yield folder
