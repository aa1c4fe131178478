"""CSV that spreadsheets open as data: a cell that would run as a formula is defused."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: What makes Excel, LibreOffice or Google Sheets read a cell as a formula (OWASP "CSV
#: injection"); tab and carriage return too, which some of them skip before looking.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value``, with a ``'`` before text a spreadsheet would run as a formula.

    Numbers stay numbers (``-0.5`` is data); only text is prefixed, as OWASP advises.

    >>> spreadsheet_safe("=HYPERLINK(1)"), spreadsheet_safe("cat"), spreadsheet_safe(-0.5)
    ("'=HYPERLINK(1)", 'cat', -0.5)
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV with a header row; a missing or ``None`` value is an empty cell, text that
    could run as a formula is defused (header included)."""
    lines = [_line([spreadsheet_safe(column) for column in columns])]
    for row in rows:
        cells = (row.get(column) for column in columns)
        lines.append(_line(["" if cell is None else spreadsheet_safe(cell) for cell in cells]))
    return "\n".join(lines) + "\n"


def _line(cells: Sequence[Any]) -> str:
    """One CSV row without its line end.

    Written with a CRLF terminator, so the csv module quotes a cell holding a lone CR
    too (with ``"\n"`` it would not, and the CR would end the row in every reader).
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()[:-2]
