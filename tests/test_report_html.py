"""report.html in a real browser: headless Chromium renders the page offline, its DOM holds
the per-class table with the class names escaped, and a screenshot is kept to look at."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers_convert import run
from test_report import CLASSES, _predictions, dataset  # noqa: F401  (fixture)

BROWSER = next(
    (
        shutil.which(name)
        for name in ("chromium", "chromium-browser", "google-chrome")
        if shutil.which(name)
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="headless Chromium not installed (apt-get install chromium)"
)


def _chromium(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={home}",
    ]
    return subprocess.run(
        [BROWSER, *flags, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


def test_report_html_renders_offline_with_escaped_names(tmp_path, dataset):  # noqa: F811
    pred, _ = _predictions(tmp_path)
    out = tmp_path / "report"
    result = run("report", "--pred", pred, "--gt", dataset, "-o", out, "--worst", "1")
    assert result.exit_code == 0, result.output
    page = (out / "report.html").resolve().as_uri()
    home = tmp_path / "browser"
    home.mkdir()
    dom = _chromium("--dump-dom", page, home=home)
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    table = html[html.index('<table id="per-class">') :]
    table = table[: table.index("</table>")]
    # The rendered DOM shows the name as text: no <b> element came out of it.
    assert 'we&lt;b&gt;ird &amp; "name"' in table and "<b>" not in html
    for name in CLASSES[:2]:
        assert f">{name}<" in table
    assert table.count("<tr>") == 1 + len(CLASSES)
    screenshot = tmp_path / "report-screenshot.png"
    shot = _chromium(f"--screenshot={screenshot}", "--window-size=1200,1600", page, home=home)
    assert shot.returncode == 0, shot.stderr
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")
