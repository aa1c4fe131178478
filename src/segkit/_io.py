"""Atomic writes and hashing shared by every stage."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

_HASH_CHUNK = 1 << 20


_TEMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_TEMP_ATTEMPTS = 100
#: What file systems allow in one file name; ``.<name>.<8 hex>.tmp`` adds 14 to it.
_MAX_NAME_BYTES = 255
_TEMP_EXTRA_BYTES = len(".12345678.tmp") + 1
#: The names ``_create_temp`` gives: ``.<name>.<8 hex>.tmp``.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$", re.DOTALL)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of segkit's temporary file names (a file segkit wrote)."""
    return _TEMP_NAME.match(name) is not None


def remove_temp_files(folder: Path) -> int:
    """Delete the temporary files an interrupted run left directly in ``folder``.

    Only names of segkit's own pattern, only plain files (never through a link);
    returns how many were removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


def _temp_prefix(name: str) -> str:
    """``name``, cut so that its temporary name fits in 255 bytes."""
    raw = os.fsencode(name)
    room = _MAX_NAME_BYTES - _TEMP_EXTRA_BYTES
    # A cut inside a character leaves bytes fsdecode escapes; the name stays these bytes.
    return name if len(raw) <= room else os.fsdecode(raw[:room])


def _create_temp(path: Path) -> tuple[int, str]:
    """Create ``.<name>.<random>.tmp`` next to ``path`` (making its folder if needed).

    Unlike ``tempfile.mkstemp`` (mode 0600), the file gets the permissions any new
    file gets (0666 minus the umask), as it becomes the output itself. For a name
    near the 255-byte limit, ``<name>`` is cut so the temporary name fits too.
    """
    folder, name = os.path.split(os.fspath(path))
    prefix = _temp_prefix(name)
    made_folder = False
    for _ in range(_TEMP_ATTEMPTS):
        temp = os.path.join(folder, f".{prefix}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, _TEMP_FLAGS, 0o666), temp
        except FileExistsError:
            continue
        except FileNotFoundError:
            # Another worker may be making the same folder right now: exist_ok.
            if made_folder or not folder:
                raise
            os.makedirs(folder, exist_ok=True)
            made_folder = True
    raise FileExistsError(f"{path}: no free temporary file name next to it")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[int]:
    """A descriptor of a new temporary sibling of ``path``, closed afterwards; renamed
    over ``path`` when the block succeeds, removed when it raises."""
    try:
        fd, temp = _create_temp(path)
    except OSError as error:
        raise _naming(error, path) from None
    try:
        try:
            yield fd
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(error, OSError):
            raise _naming(error, path) from None
        raise


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` about ``path`` itself, not the temporary name nobody knows."""
    named = error if error.errno is None else type(error)(error.errno, error.strerror, path)
    named.while_writing = True  # type: ignore[attr-defined]  # for io_error_line
    return named


def write_error_reason(error: OSError) -> str:
    """``cannot write <file> (<reason>)`` for a failed write, one line."""
    where = f" {error.filename}" if error.filename else ""
    return f"cannot write{where} ({error.strerror or error})"


def io_error_line(error: OSError) -> str:
    """One line for a failed read (``<file>: <reason>``) or write (``cannot write …``)."""
    if getattr(error, "while_writing", False):
        return write_error_reason(error)
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` and rename it over ``path`` on success.

    An exception inside the block removes the temporary file, so readers only ever
    see the old file or the complete new one. Missing folders are created.
    """
    text = {} if "b" in mode else {"encoding": "utf-8"}
    with _replacing(path) as fd, os.fdopen(fd, mode, closefd=False, **text) as handle:
        yield handle


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (with plain system calls: convert writes many)."""
    with _replacing(path) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (trailing newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def atomic_write_with(path: Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(handle)`` on a temporary file, then rename it to ``path``."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
