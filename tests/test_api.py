"""The package-level Python API runs every data stage without the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import segkit

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


def test_stages_chain_through_the_python_api(tmp_path: Path) -> None:
    source = tmp_path / "annotations"
    shutil.copytree(SAMPLE_DATA, source)
    summary = segkit.convert(source, tmp_path / "ds", labels=str(source / "labels.txt"), workers=1)
    assert isinstance(summary, segkit.ConvertSummary)
    assert summary.ok and summary.images == 6
    assert summary.classes == ("_background_", "cell", "nucleus", "debris")

    split = segkit.split_dataset(tmp_path / "ds", val=0.34, test=0.0, seed=0, workers=1)
    train = (tmp_path / "ds/ImageSets/Segmentation/train.txt").read_text().split()
    val = (tmp_path / "ds/ImageSets/Segmentation/val.txt").read_text().split()
    assert sorted(train + val) == sorted(segkit.open_dataset(tmp_path / "ds").ids)
    assert not set(train) & set(val)
    assert split is not None

    weights = segkit.compute_weights(tmp_path / "ds")
    assert weights is not None and (tmp_path / "ds/weights.json").is_file()

    findings = segkit.validate_dataset(tmp_path / "ds")
    assert [f for f in findings if f.severity == "error"] == []


def test_the_version_literal_is_the_installed_distributions_version() -> None:
    from importlib.metadata import version

    import segkit

    assert segkit.__version__ == version("segkit")  # pyproject.toml reads the literal
