"""segkit: labelme annotations to a trained, honestly evaluated segmentation model.

Every stage is a plain function as well as a command::

    import segkit
    summary = segkit.convert("annotations", "dataset", labels="labels.txt")
    findings = segkit.validate_dataset("dataset")
    splits = segkit.split_dataset("dataset", val=0.2, test=0.1, seed=0)
    weights = segkit.compute_weights("dataset")
    summary = segkit.train("dataset", "runs/exp1", epochs=20)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Imported on first use, so `import segkit` stays cheap (no numpy/scipy/torch).
_LAZY = {
    "convert": "segkit.convert_stage",
    "ConvertSummary": "segkit.convert_stage",
    "validate_dataset": "segkit.validate",
    "split_dataset": "segkit.split_stage",
    "compute_weights": "segkit.weights_stage",
    "WeightsOptions": "segkit.weights_stage",
    "open_dataset": "segkit.dataset",
    "TrainOptions": "segkit.train.options",
}

__all__ = ["__version__", *_LAZY, "train"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("segkit")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "train":  # the sub-package is callable: segkit.train(dataset, output, ...)
        return import_module("segkit.train")
    # The version too is looked up on first use: importlib.metadata takes ~40 ms, and
    # the command line guards Ctrl-C only once this package has been imported.
    if name == "__version__":
        globals()["__version__"] = value = _version()
        return value
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segkit' has no attribute {name!r}")
