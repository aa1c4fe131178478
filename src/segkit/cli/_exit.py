"""End the ``segkit`` process as soon as its command is done, skipping interpreter teardown.

After a command, CPython frees every module one by one (numpy, Pillow, Typer, rich:
~35 ms of a ~0.9 s ``segkit convert``, a quarter of ``segkit --help``). A process that
is ending anyway needs none of it. What exit must still do is kept: standard streams
are flushed and the ``atexit`` handlers run (multiprocessing's, coverage's, a user's
``sitecustomize``'s). Where that cannot be done the same way, the ordinary exit runs.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def exit_now(code: object) -> NoReturn:
    """End the process with ``code`` (a ``SystemExit`` code), without teardown when safe.

    The ordinary exit (``SystemExit``) runs instead when ``code`` is not a status
    number (a message to print), when another thread is alive (the interpreter would
    wait for it), or when a stream cannot be flushed (a closed pipe: Python reports
    that in its own way, exit status 120).
    """
    status = 0 if code is None else code
    if type(status) is not int or not 0 <= status <= 255 or threading.active_count() > 1:
        raise SystemExit(code)
    try:
        _flush_streams()
        # Run (and clear) the handlers now: the ordinary exit below, if it comes to
        # that, finds none left to run twice.
        atexit._run_exitfuncs()
        _flush_streams()
    except (OSError, ValueError):
        raise SystemExit(code) from None
    os._exit(status)
