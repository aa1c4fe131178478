"""TOML in and out for ``segkit-run.toml``: tables of scalars, lists and one level of sub-tables.

Reading is the standard library's (``tomllib``; ``tomli`` before Python 3.11). Writing
covers only what the run configuration holds, so a few lines replace a dependency.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def loads(text: str) -> dict[str, Any]:
    """Parse TOML text (raises ``TOMLDecodeError``)."""
    return tomllib.loads(text)


def _string(value: str) -> str:
    # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else _string(name)


def value_text(value: Any) -> str:
    """One TOML value: a bool, int, float, string or list of those.

    >>> value_text([1, "a", True, 0.5])
    '[1, "a", true, 0.5]'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps(
    tables: Mapping[str, Mapping[str, Any]], comments: Mapping[str, str] | None = None
) -> str:
    """TOML text for ``{table: {key: value}}``; a ``None`` value is written as a comment
    (TOML has no null: leaving the key out means the default), a dict value as a
    sub-table. ``comments`` puts a ``#`` line above a table."""
    lines: list[str] = []
    for table, values in tables.items():
        if comments and table in comments:
            lines.extend(f"# {line}".rstrip() for line in comments[table].splitlines())
        lines.append(f"[{_key(table)}]")
        subtables = []
        for name, value in values.items():
            if value is None:
                lines.append(f"# {_key(name)} = (unset: the default)")
            elif isinstance(value, Mapping):
                subtables.append((name, value))
            else:
                lines.append(f"{_key(name)} = {value_text(value)}")
        for name, value in subtables:
            lines.append(f"[{_key(table)}.{_key(name)}]")
            lines.extend(f"{_key(k)} = {value_text(v)}" for k, v in value.items())
        lines.append("")
    return "\n".join(lines)
