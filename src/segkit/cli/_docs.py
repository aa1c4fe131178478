"""``docs/cli.md``, generated from the app itself so it cannot drift from ``-h``.

Regenerate after changing a command: ``python -m segkit.cli._docs > docs/cli.md``
(``tests/test_cli_convention.py`` fails until then).
"""

from __future__ import annotations

import typer.main

from segkit.cli import app

#: Help is rendered at this width, the narrowest terminal it must read well in.
WIDTH = 80

_INTRO = """\
# Command line

Generated from the app by `python -m segkit.cli._docs > docs/cli.md`; a test
checks that it matches. Every command accepts `-h`/`--help`.

## Exit codes

The same for every command:

| code | meaning |
|---:|---|
| 0 | success |
| 1 | data problems: some input could not be used (a file that fails to convert, a \
dataset with validate errors, masks that cannot be read) |
| 2 | usage errors: an unknown option or value, a path that does not exist or is of \
the wrong kind, an empty path, `--workers` below 1, conflicting options (`--map a=b \
--map a=c`, `--val` with `--folds`) |
| 130 | interrupted (Ctrl-C) |

## Output

- Errors are one line each on stderr: `error: FILE: what is wrong`.
- `--json` prints exactly one JSON document on stdout, also when the command
  fails; a failure that stops the command prints
  `{"ok": false, "exit_code": N, "errors": [...]}`. Nothing else goes to stdout.
- When stdout is not a terminal (a pipe, a log file), tables are as wide as
  their content: no file name, label or number is wrapped or cut. A table whose
  class columns do not fit the terminal width (`COLUMNS`, else 80) prints them
  as rows. There is no progress bar.
"""


def command_help(name: str | None = None) -> str:
    """The ``-h`` text of ``segkit NAME`` (or of ``segkit``) at :data:`WIDTH` columns."""
    group = typer.main.get_command(app)
    root = group.make_context("segkit", [name] if name else [], resilient_parsing=True)
    root.terminal_width = root.max_content_width = WIDTH
    if name is None:
        return group.get_help(root)
    command = group.get_command(root, name)
    assert command is not None, name
    ctx = command.make_context(name, [], parent=root, resilient_parsing=True)
    ctx.terminal_width = ctx.max_content_width = WIDTH
    return command.get_help(ctx)


def render() -> str:
    """The whole of ``docs/cli.md``."""
    group = typer.main.get_command(app)
    root = group.make_context("segkit", [], resilient_parsing=True)
    parts = [_INTRO, "## `segkit`\n", "```text\n" + command_help() + "\n```\n"]
    for name in group.list_commands(root):
        parts += [f"## `segkit {name}`\n", "```text\n" + command_help(name) + "\n```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
