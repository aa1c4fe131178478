"""Ctrl-C while the command line imports its libraries: exit 130 quietly, no traceback.

Imports nothing but ``os`` and ``_signal`` (both loaded with the interpreter; the
``signal`` module would import ``enum``), so the guard is in place a few
milliseconds after Python starts.
"""

import _signal as signal
import os

#: The exit status shells use for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
_STARTUP_LINE = b"segkit: interrupted during start-up; nothing was written\n"


def write_and_exit(line: bytes) -> None:
    """Write ``line`` to stderr and end the process now with status 130."""
    try:  # noqa: SIM105 - contextlib is not loaded yet at start-up
        os.write(2, line)
    except OSError:
        pass
    os._exit(EXIT_INTERRUPTED)


def _on_startup_sigint(signum: int, frame: object) -> None:
    write_and_exit(_STARTUP_LINE)


def quiet_startup() -> object:
    """Make Ctrl-C exit 130 quietly until :func:`end_startup`; returns the old handler.

    Only replaces Python's own handler, so an embedding program keeps its choice.
    """
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    try:
        return signal.signal(signal.SIGINT, _on_startup_sigint)
    except ValueError:  # not the main thread
        return None


def end_startup(previous: object) -> None:
    """Put back the handler :func:`quiet_startup` replaced."""
    if previous is not None and signal.getsignal(signal.SIGINT) is _on_startup_sigint:
        signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]
