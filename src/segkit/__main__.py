"""``python -m segkit``: the command line (what ``torchrun -m segkit train …`` starts)."""

from segkit.cli import entry_point

entry_point()
