"""segkit: labelme annotations to a trained, honestly evaluated segmentation model.

Every stage is a plain function as well as a command. Each takes its input folder
(and output folder, for convert), one frozen ``XOptions`` and an optional
``progress(done, total)`` callback, and returns an ``XSummary`` with ``to_dict()``;
keyword option fields are a shorthand for the options object::

    import segkit
    summary = segkit.convert("annotations", "dataset", labels="labels.txt")
    findings = segkit.validate_dataset("dataset")  # a list of findings
    report = segkit.validate("dataset", segkit.ValidateOptions(workers=2))
    splits = segkit.split_dataset("dataset", segkit.SplitOptions(val=0.2, test=0.1))
    weights = segkit.compute_weights("dataset", segkit.WeightsOptions(border=True))
    summary = segkit.train("dataset", "runs/exp1", epochs=20)
    summary = segkit.run("annotations", "work", train={"epochs": 20})  # the whole chain
"""

from __future__ import annotations

# Nothing heavier than this module itself: the command line guards Ctrl-C only once
# this package is imported, so its import must take next to no time.

# Imported on first use, so `import segkit` stays cheap (no numpy/scipy/torch).
_LAZY = {
    "convert": "segkit.convert_stage",
    "ConvertOptions": "segkit.convert_stage",
    "ConvertSummary": "segkit.convert_stage",
    "validate": "segkit.validate_stage",
    "validate_dataset": "segkit.validate_stage",
    "ValidateOptions": "segkit.validate_stage",
    "ValidateSummary": "segkit.validate_stage",
    "split_dataset": "segkit.split_stage",
    "SplitOptions": "segkit.split_stage",
    "SplitSummary": "segkit.split_stage",
    "compute_weights": "segkit.weights_stage",
    "WeightsOptions": "segkit.weights_stage",
    "WeightsSummary": "segkit.weights_stage",
    "open_dataset": "segkit.dataset",
    "SegkitError": "segkit.errors",
    "OptionError": "segkit.errors",
    "DatasetError": "segkit.errors",
    "TrainOptions": "segkit.train.options",
    "run": "segkit.pipeline.runner",
    "RunConfig": "segkit.pipeline.config",
    "RunSummary": "segkit.pipeline.runner",
}

#: The one place the version is written; pyproject.toml reads it from here (a literal:
#: ``segkit --version`` must not pay ~40 ms of importlib.metadata).
__version__ = "0.1.0"

__all__ = ["__version__", *_LAZY, "train"]


def __getattr__(name: str) -> object:
    if name == "train":  # the sub-package is callable: segkit.train(dataset, output, ...)
        import importlib

        return importlib.import_module("segkit.train")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segkit' has no attribute {name!r}")
