"""Exception hierarchy: the CLI turns any SegkitError into one red line and exit code 1."""

from __future__ import annotations


class SegkitError(Exception):
    """Base class for errors caused by the user's input, not by a bug in segkit."""


class AnnotationError(SegkitError):
    """A labelme JSON file (or its image) cannot be converted."""


class DatasetError(SegkitError):
    """A dataset folder is missing files or holds files segkit cannot read."""


class ManifestError(DatasetError):
    """The segkit.json manifest is missing, malformed or inconsistent."""


class OptionError(SegkitError):
    """An option or option combination is invalid."""


class FolderBusyError(SegkitError):
    """Another segkit process is writing the same output folder."""


class SegkitNote(UserWarning):
    """Something the user should know that is not an error (the CLI prints ``note: …``)."""
