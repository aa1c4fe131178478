"""Ctrl-C on the command line: one line and exit 130, never a traceback, never a hang.

The first Ctrl-C raises :class:`Interrupted` in the main process: stages stop their
worker pools (``segkit.parallel``), atomic writes drop their temporary files, the
folder lock is released, and :func:`ctrl_c_exits_130` prints what was kept. A second
Ctrl-C while that clean-up runs ends the process at once. ``Interrupted`` is not a
``KeyboardInterrupt`` on purpose: Click would turn that into "Aborted!" and exit 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from segkit.cli._startup import EXIT_INTERRUPTED, write_and_exit

KEPT_LINE = (
    "segkit: interrupted; {kept}; run the same command again to continue (no --force needed)"
)
_KEPT_DEFAULT = "outputs finished so far are kept"
_AGAIN_LINE = b"segkit: interrupted again; exiting now\n"


class Interrupted(BaseException):
    """Raised in the main thread by the first Ctrl-C."""


def _on_late_sigint(signum: int, frame: FrameType | None) -> None:
    os._exit(EXIT_INTERRUPTED)  # the command has ended: nothing left to stop or say


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def ctrl_c_exits_130() -> Iterator[None]:
    """Run a command so that Ctrl-C stops it cleanly with one line and exit status 130.

    An ignored SIGINT stays ignored: a shell starts background jobs (``cmd &`` in a
    script, ``nohup``) so, for them to outlive a Ctrl-C meant for the foreground.
    """
    if not _in_main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield
        return
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            write_and_exit(_AGAIN_LINE)
        interrupted.set()
        raise Interrupted

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except (Interrupted, KeyboardInterrupt) as error:
        # KeyboardInterrupt: a library that replaced our handler for a while. A stage
        # may say what it kept in a note on the exception.
        kept = "; ".join(getattr(error, "__notes__", ())) or _KEPT_DEFAULT
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(KEPT_LINE.format(kept=kept) + "\n")
            sys.stderr.flush()
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        # Python's own handler would print a traceback if Ctrl-C came while the
        # interpreter shuts down; an embedding program gets its handler back. Once
        # interrupted, the process is exiting with 130 already: further Ctrl-Cs are
        # ignored (SIG_IGN outlives the interpreter's own clean-up, a handler does not).
        if interrupted.is_set():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        elif previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_late_sigint)
        else:
            signal.signal(signal.SIGINT, previous)
