"""The ``segkit`` executable ends without interpreter teardown, and exits as it otherwise would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import segkit

#: Run in a fresh interpreter: an exit handler, an object whose finaliser runs only in
#: teardown, then the command line through ``ENTRY`` with the given arguments.
_PROBE = textwrap.dedent(
    """
    import atexit, sys, threading, time

    atexit.register(lambda: print("atexit ran", flush=True))

    class Teardown:
        def __del__(self):
            print("teardown ran", flush=True)

    kept = Teardown()  # a module global: freed only when the interpreter tears down
    if "--with-thread" in sys.argv:
        sys.argv.remove("--with-thread")
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread done"))).start()
    sys.argv = ["segkit", *sys.argv[1:]]
    from segkit.cli import ENTRY
    ENTRY()
    """
)


def _run(entry: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    code = _PROBE.replace("ENTRY", entry)
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True, timeout=60, **kwargs
    )


ARGUMENTS = [
    pytest.param(("--version",), id="version"),
    pytest.param(("--help",), id="help"),
    pytest.param(("convert", "--help"), id="command-help"),
    pytest.param(("no-such-command",), id="usage-error"),
    pytest.param(("validate", "{missing}"), id="data-error"),
]


@pytest.mark.parametrize("args", ARGUMENTS)
def test_the_executable_skips_teardown_but_runs_exit_handlers(args, tmp_path: Path) -> None:
    args = tuple(arg.format(missing=tmp_path / "missing") for arg in args)
    quick = _run("entry_point", *args)
    ordinary = _run("main", *args)
    assert "atexit ran" in quick.stdout
    assert "teardown ran" not in quick.stdout
    assert "teardown ran" in ordinary.stdout  # the probe can tell the two apart
    # Same status and the same output, less the teardown line.
    assert quick.returncode == ordinary.returncode
    assert quick.stdout == ordinary.stdout.replace("teardown ran\n", "")
    assert quick.stderr == ordinary.stderr


def test_python_dash_m_segkit_is_the_executable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segkit", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("segkit ")
    assert "entry_point()" in Path(segkit.__file__).with_name("__main__.py").read_text()


def test_a_live_thread_gets_the_ordinary_exit() -> None:
    done = _run("entry_point", "--with-thread", "--version")
    assert done.returncode == 0
    assert "thread done" in done.stdout  # waited for, as the interpreter does
    assert "teardown ran" in done.stdout


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_an_unwritable_stdout_exits_as_python_does(buffered: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    done = {}
    for entry in ("entry_point", "main"):
        program = f"import sys; sys.argv = ['segkit', '--help']\nfrom segkit.cli import {entry}\n{entry}()"
        with open("/dev/full", "w") as full:
            done[entry] = subprocess.run(
                [sys.executable, "-c", program],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                timeout=60,
            )
    if buffered:  # the write fails only in the last flush: Python's status for that
        assert done["main"].returncode == 120
    assert done["entry_point"].returncode == done["main"].returncode != 0
    assert "No space left on device" in done["entry_point"].stderr


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("a message", 1, "a message\n"), (256, 0, "")],
)
def test_exit_now_keeps_what_system_exit_means(code, status, stderr) -> None:
    program = f"from segkit.cli._exit import exit_now\nexit_now({code!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == status
    assert done.stderr == stderr
