"""Shared fixtures: a wide terminal for CLI output, offscreen Qt for labelme, seeded RNGs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("COLUMNS", "200")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    import numpy as np

    np.random.seed(0)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return
    torch.manual_seed(0)
