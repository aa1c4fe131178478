"""examples/python_api.py runs the whole chain from Python on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"


def test_python_api_example_runs_the_chain(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path), "--epochs", "1", "--scenes", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for stage in ("convert:", "validate:", "split:", "weights:", "train:", "report:"):
        assert stage in done.stdout, stage
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert f"mIoU {report['pixel']['mIoU']}" in done.stdout
    assert (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()
    assert (tmp_path / "dataset" / "weights.json").is_file()
