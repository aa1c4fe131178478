"""Shared fixtures: a wide terminal for CLI output, offscreen Qt for labelme, seeded RNGs."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("COLUMNS", "200")
# The commands the tests start in subprocesses (demo, train, torchrun) work on tiny
# tensors too: one OpenMP thread each, or two test workers' subprocesses spin-wait
# against each other on a 2-core machine (several times slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A test suite started in the background (`cmd &` in a script) inherits SIGINT ignored,
# and so would every command the tests start, which then could not be Ctrl-C'd as a
# person at a terminal would: with a handler here, children start at the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _seeded_single_thread() -> Iterator[None]:
    """Seed numpy and torch; run torch on one thread.

    Test tensors are tiny: a second intra-op thread only adds synchronisation, and with
    other processes on the cores OpenMP's spin-waiting made runs ~20× slower.
    """
    import numpy as np

    np.random.seed(0)
    try:  # the data-half tests also run where torch is absent (other Pythons, see docs)
        import torch
    except ImportError:
        yield
        return
    torch.manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
