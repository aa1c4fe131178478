"""``segkit report``: score a run or a folder of predicted masks against a dataset split.

``tables`` holds the pure rows and numbers, ``plots`` the matplotlib pictures, ``html``
the self-contained page, ``stage`` the file shell. The stage is also a Python API::

    from segkit.report import ReportOptions, report
    summary = report("runs/a")                                   # a run folder
    summary = report("preds", options=ReportOptions(mode="predictions", gt="dataset"))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = ("report", "compare", "read_report", "ReportOptions", "ReportSummary", "ReportError")
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    # Imported on first use: the stage loads numpy, Pillow and matplotlib.
    if name in _LAZY:
        return getattr(import_module("segkit.report.stage"), name)
    raise AttributeError(f"module 'segkit.report' has no attribute {name!r}")
