"""Worker functions and process probes for the worker-pool tests.

Imports nothing heavy: spawn and forkserver workers import this module to find the
functions they run, and each worker pays for what it imports.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

#: Filled in the main process after import: only a forked worker holds its contents.
SET_AFTER_IMPORT: list[int] = []


def square_and_parent(value: int) -> tuple[int, int]:
    return value * value, os.getppid()


def count_set_after_import(_: object) -> int:
    return len(SET_AFTER_IMPORT)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has); reads /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ends within ``seconds``; if not, it is killed, so that a
    failing test leaves no orphan behind."""
    deadline = time.monotonic() + seconds
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not running(pid):
        return True
    os.kill(pid, signal.SIGKILL)
    return False
