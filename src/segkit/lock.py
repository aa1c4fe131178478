"""One writer per folder: an advisory lock file that dies with the process holding it.

``.segkit.lock`` in the output folder is locked with ``flock`` while a stage writes,
so the kernel frees it whatever ends the process (SIGKILL included), and a second
writer is refused at once. The file holds who locked it (pid, host, command, start),
for the refusal message and for the note when a later run finds the lock of a
process that died. Readers (``validate``, a finished ``report``) take no lock.
Where ``flock`` does not exist, an existing file whose process still runs (same
host) counts as held.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segkit.errors import DatasetError, FolderBusyError, SegkitNote

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".segkit.lock"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_ATTEMPTS = 20
# Descriptors of the locks this process holds. A forked child (a DataLoader or pool
# worker) inherits them, and flock stays held while any copy is open: a worker that
# outlives its killed parent would keep the folder locked. Children close their copies.
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _command() -> str:
    args = [os.path.basename(sys.argv[0]) or "python", *sys.argv[1:]]
    return " ".join(args)[:300]


def _holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "a process that left no details"
    parts = [f"pid {info.get('pid')}"]
    if info.get("host") and info.get("host") != socket.gethostname():
        parts.append(f"on {info['host']}")
    if info.get("command"):
        parts.append(f"`{info['command']}`")
    if info.get("started"):
        parts.append(f"started {info['started']}")
    return ", ".join(parts)


def _read_info(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {"command": "unreadable lock details"}
    return info if isinstance(info, dict) else {}


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_lock(fd: int, info: dict[str, Any]) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    same_host = info.get("host") in (None, socket.gethostname())  # pragma: no cover
    return not (info and same_host and _pid_alive(info.get("pid")))  # pragma: no cover


def _open(path: Path) -> int:
    try:
        return os.open(path, _OPEN_FLAGS, 0o666)
    except OSError as error:
        raise DatasetError(
            f"cannot write {path} ({error.strerror or error}); segkit needs a writable "
            "output folder"
        ) from None


def _busy(folder: Path, info: dict[str, Any]) -> FolderBusyError:
    return FolderBusyError(
        f"{folder}: another segkit process is writing here ({_holder_text(info)}); "
        "wait for it to finish or stop it"
    )


def check_not_busy(folder: Path) -> None:
    """Raise ``FolderBusyError`` now when another process holds ``folder``'s lock.

    For a stage that takes the lock only for its final writes (``report``): a second
    writer is refused at once, not after minutes of work. Takes no lock itself.
    """
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return  # no lock file; an unusable one is reported when the lock is taken
    try:
        info = _read_info(fd)
        if fcntl is None:  # pragma: no cover - Windows
            busy = not _try_lock(fd, info)
        else:
            try:  # a shared lock fails only while someone holds the exclusive one
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                busy = False
            except BlockingIOError:
                busy = True
    finally:
        os.close(fd)
    if busy:
        raise _busy(folder, info)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the write lock of ``folder`` (which must exist) for the block.

    Raises ``FolderBusyError`` naming the other process when it is held; a lock left
    by a process that is gone is taken over with a ``SegkitNote`` warning.
    """
    path = Path(folder) / LOCK_NAME
    for _ in range(_ATTEMPTS):
        fd = _open(path)
        info = _read_info(fd)
        if not _try_lock(fd, info):
            os.close(fd)
            raise _busy(folder, info)
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # released and removed between our open and lock: try again
            os.close(fd)
            continue
        _HELD.add(fd)
        break
    else:  # pragma: no cover - only under a storm of lockers
        raise FolderBusyError(f"{folder}: could not take the lock {path}; try again")
    try:
        if info:
            warnings.warn(
                f"{folder}: took over the lock left by {_holder_text(info)}, "
                "which is no longer running",
                SegkitNote,
                stacklevel=3,
            )
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        with contextlib.suppress(OSError):  # the details only serve messages
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(mine) + "\n").encode(), 0)
        yield
    finally:
        # Removed while still held: a process waiting on this file sees it is gone.
        with contextlib.suppress(OSError):
            os.unlink(path)
        _HELD.discard(fd)
        os.close(fd)
