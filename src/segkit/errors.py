"""Every segkit exception, in one place.

The CLI turns any ``SegkitError`` into one ``error:`` line; ``OptionError`` (a bad option
or path given by the user) exits 2, every other ``SegkitError`` (input data that cannot be
used) exits 1. See ``docs/cli.md``.
"""

from __future__ import annotations


class SegkitError(Exception):
    """Base class for errors caused by the user's input, not by a bug in segkit."""


class AnnotationError(SegkitError):
    """A labelme JSON file (or its image) cannot be converted."""


class DatasetError(SegkitError):
    """A dataset folder is missing files or holds files segkit cannot read."""


class ManifestError(DatasetError):
    """The segkit.json manifest is missing, malformed or inconsistent."""


class OptionError(SegkitError, ValueError):
    """An option, option combination or given path is invalid (a usage error, exit 2).

    Also a ``ValueError``, which scripts calling a stage with a bad value may expect.
    """


class MaskEncodingError(DatasetError):
    """A mask stored in a form that cannot hold ids of its kind (colours, 16-bit classes, …)."""


class EmptySplitError(DatasetError):
    """A split would get no items: the kept assignment leaves no group for it."""

    def __init__(self, split: str) -> None:
        super().__init__(
            f"split {split!r} would be empty: every group is already kept in another split"
        )
        self.split = split


class CheckpointError(SegkitError):
    """A checkpoint is missing, malformed, or does not match the model it describes."""


class MetricsError(SegkitError, ValueError):
    """Ids, a matrix or saved counts the metrics cannot score (also a ``ValueError``)."""


class ReportError(SegkitError):
    """Predictions or a run cannot be scored (one line per problem, each naming a file)."""


class EncoderWeightsError(SegkitError):
    """An encoder-weights file is missing, unreadable, or not a fitting ResNet state dict."""


class TrainingDiverged(SegkitError):
    """The training loss became NaN or infinite."""


class StateError(SegkitError):
    """A training resume state is missing, damaged, or does not fit the run."""


class FolderBusyError(SegkitError):
    """Another segkit process is writing the same output folder."""


class SegkitNote(UserWarning):
    """Something the user should know that is not an error (the CLI prints ``note: …``)."""
