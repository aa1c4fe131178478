"""Label names and ids are data in every file segkit writes: escaped in HTML and Markdown,
and never a spreadsheet formula in a CSV (OWASP: a ``'`` before = + - @ tab CR)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
from helpers_convert import run
from voc_builder import write_voc

from segkit._csv import FORMULA_STARTS, csv_text, spreadsheet_safe
from segkit.predict.stage import ranking_csv
from segkit.report import tables
from segkit.train.stage import _csv_text as metrics_csv_text

SCRIPT = "<script>alert(1)</script>"
CLASSES = ["_background_", "=1+2", "-cmd", "@SUM(A1)", "+x", "a|b`c\\", SCRIPT]
#: Sample ids are file names: formulas, Markdown table syntax, HTML.
IDS = ["=HYPERLINK(0)", "@id", "x|y`z", "<img src=x onerror=alert(1)>"]


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_formula_cells_get_a_quote_and_others_stay(start: str) -> None:
    assert spreadsheet_safe(f"{start}cmd") == f"'{start}cmd"
    assert spreadsheet_safe(f"a{start}") == f"a{start}"
    assert spreadsheet_safe(-0.5) == -0.5  # a number is data, not a formula


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _assert_inert(text: str) -> None:
    for row in _cells(text):
        for cell in row:
            if cell and cell[0] in "=+-@\t\r":
                # Numbers are data; anything else starting so must have been quoted.
                float(cell)


def test_csv_text_quotes_header_and_cells() -> None:
    text = csv_text(["id", "=head"], [{"id": "\rx", "=head": "@y"}, {"id": None}])
    assert _cells(text) == [["id", "'=head"], ["'\rx", "'@y"], ["", ""]]
    _assert_inert(text)


def test_ranking_and_metrics_csv_are_inert() -> None:
    rows = [
        {
            "rank": 1,
            "id": "=cmd",
            "image": "+a.png",
            "mean_entropy": -0.0,
            "low_confidence_share": 0,
        }
    ]
    ranking = ranking_csv(rows)
    assert _cells(ranking)[1][:3] == ["1", "'=cmd", "'+a.png"]
    _assert_inert(ranking)
    metrics = metrics_csv_text([{"epoch": 1, "IoU/=x": 0.5, "note": "-1+1"}])
    assert _cells(metrics) == [["epoch", "IoU/=x", "note"], ["1", "0.5", "'-1+1"]]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``segkit report --pred`` over a dataset whose class names and ids are hostile."""
    root = tmp_path_factory.mktemp("escaping")
    masks = {}
    for index, sample_id in enumerate(IDS):
        mask = np.zeros((8, 8), np.uint8)
        mask[2:6, 2:6] = 1 + (index + np.arange(4)[:, None]) % (len(CLASSES) - 1)
        masks[sample_id] = mask
    dataset = write_voc(
        root / "data",
        masks,
        images={i: np.full((8, 8, 3), 99, np.uint8) for i in IDS},
        classes=CLASSES,
        splits={"val": IDS},
    )
    pred = root / "pred"
    write_voc(pred, {i: np.roll(m, 1, axis=1) for i, m in masks.items()})
    result = run("report", "--pred", pred / "SegmentationClass", "--gt", dataset, "-o", root / "r")
    assert result.exit_code == 0, result.output
    return root / "r"


@pytest.mark.parametrize("name", ["per_class.csv", "confusion_matrix.csv", "per_image.csv"])
def test_report_csvs_are_inert(report_dir: Path, name: str) -> None:
    text = (report_dir / name).read_text()
    _assert_inert(text)
    flat = {cell for row in _cells(text) for cell in row}
    wanted = {"'=1+2", "'-cmd", "'@SUM(A1)", "'+x"} if name != "per_image.csv" else set()
    wanted |= {"'=HYPERLINK(0)", "'@id"} if name == "per_image.csv" else set()
    assert wanted <= flat


def test_report_html_escapes_names_and_ids(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text()
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def _table_cells(line: str) -> list[str]:
    """A Markdown table row split on its unescaped pipes (GFM)."""
    return re.split(r"(?<!\\)\|", line.strip().strip("|"))


def test_report_markdown_tables_keep_their_columns(report_dir: Path) -> None:
    lines = (report_dir / "report.md").read_text().splitlines()
    per_class = [line for line in lines if line.startswith("| ") and "GT px" not in line]
    widths = {len(_table_cells(line)) for line in lines if line.startswith("| ")}
    header = next(line for line in lines if "GT px" in line)
    assert len(_table_cells(header)) in widths
    for line in per_class:
        cells = _table_cells(line)
        assert len(cells) in (5, len(_table_cells(header)), 3), line
    text = "\n".join(lines)
    assert "a\\|b\\`c\\\\" in text and "x\\|y\\`z" in text
    assert "\\<script\\>" in text and "\\<img" in text
    assert not re.search(r"(?<!\\)[<>]", text)  # no raw HTML


def test_markdown_code_span_survives_backticks() -> None:
    """The source path goes into a code span, where backslashes escape nothing."""
    code = tables._md_code("runs/a``b`\nc")
    assert code == "``` runs/a``b` c ```"
