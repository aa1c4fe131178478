"""Shared fixtures: a wide terminal for CLI output, offscreen Qt for labelme, seeded RNGs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("COLUMNS", "200")


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
