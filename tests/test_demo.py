"""`segkit demo` end to end through the real CLI, and the sample-data generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from segkit.demo import DemoOptions
from segkit.errors import OptionError
from segkit.sample_data import write_sample_data

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "segkit"]


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One reduced demo (tiny data, one epoch) shared by the checks below."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    done = run("demo", "-o", out, "--epochs", "1", "--scenes", "4", "--crop", "32", "--json")
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


def test_demo_runs_every_stage_and_reports_where_things_are(demo_run) -> None:
    out, summary = demo_run
    assert list(summary["stages"]) == [
        "sample data",
        "convert",
        "validate",
        "split",
        "weights",
        "train",
        "report",
        "predict",
    ]
    stages = summary["stages"]
    # sample data: 5 edge cases without the 16-bit TIFF + 4 scenes, one labels.txt
    assert (
        stages["sample data"]["annotations"] == 9 == len(list(out.rglob("annotations/**/*.json")))
    )
    assert (out / "annotations" / "labels.txt").read_text().split() == [
        "__ignore__",
        "_background_",
        "cell",
        "nucleus",
        "debris",
    ]
    # convert: every annotation became an image, a class mask and an object mask
    dataset = out / "dataset"
    assert stages["convert"]["images"] == 9 and stages["convert"]["failures"] == []
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        assert len(list((dataset / folder).iterdir())) == 9, folder
    # validate: clean
    assert (stages["validate"]["errors"], stages["validate"]["samples"]) == (0, 9)
    # split: files on disk match the summary
    lists = dataset / "ImageSets" / "Segmentation"
    for split in stages["split"]["splits"]:
        ids = (lists / f"{split['name']}.txt").read_text().split()
        assert len(ids) == split["images"] > 0
    # weights: weights.json and one border map per training image
    assert json.loads((dataset / "weights.json").read_text())
    train_ids = (lists / "train.txt").read_text().split()
    maps = {p.stem for p in (dataset / "SegmentationWeights").glob("*.npy")}
    assert set(train_ids) <= maps
    # train: a run folder with checkpoints and one metrics row per epoch
    run_dir = out / "runs" / "train"
    assert stages["train"]["epochs"] == 1
    assert (run_dir / "checkpoints" / "best.safetensors").is_file()
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1
    # report: the headline numbers are the report's own
    report = json.loads((out / "report" / "val" / "report.json").read_text())
    assert summary["mIoU"] == report["pixel"]["mIoU"]
    assert summary["object_f1"] == report["objects"]["scores"]["pooled"]["f1"]
    assert Path(summary["report_html"]) == out / "report" / "val" / "report.html"
    assert Path(summary["report_html"]).is_file()
    assert json.loads((out / "demo.json").read_text())["mIoU"] == summary["mIoU"]
    # predict: the test split's images, each with a mask, an overlay and labelme JSON
    test_ids = sorted((lists / "test.txt").read_text().split())
    predicted = stages["predict"]
    assert predicted["ok"] and predicted["predicted"] == len(test_ids) > 0
    predictions = out / "predictions"
    assert sorted(p.stem for p in (predictions / "masks").glob("*.png")) == test_ids
    assert sorted(p.stem for p in (predictions / "overlays").iterdir()) == test_ids
    for sample_id in test_ids:
        shapes = json.loads((predictions / "labelme" / f"{sample_id}.json").read_text())
        assert "shapes" in shapes and "imagePath" in shapes


def test_demo_is_segkit_run_with_demo_defaults(demo_run) -> None:
    """The demo's chain is `segkit run`'s: its configuration, recorded and reusable."""
    from segkit.pipeline.config import read_config

    out, summary = demo_run
    tables = read_config(out / "segkit-run.toml")
    assert tables["run"]["input"] == str((out / "annotations").resolve())
    assert tables["train"]["model"] == "unet-tiny" and tables["train"]["epochs"] == 1
    assert tables["train"]["border_weights"] is True and tables["weights"]["border"] is True
    assert (tables["split"]["val"], tables["split"]["test"]) == (0.2, 0.1)
    assert summary["stages"]["report"]["val"]["mIoU"] == summary["mIoU"]


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    done = run("demo", "-o", tmp_path, "--epochs", "1")
    assert done.returncode == 2
    assert "not empty" in done.stderr and str(tmp_path) in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize(
    "changes", [{"epochs": 0}, {"crop": -1}, {"minutes": 0.0}, {"scenes": 2}, {"epochs": True}]
)
def test_demo_options_are_checked(changes: dict) -> None:
    with pytest.raises(OptionError):
        DemoOptions(**changes)


def test_sample_data_is_deterministic_and_keeps_the_repository_cases(tmp_path: Path) -> None:
    a = write_sample_data(tmp_path / "a", scenes=3)
    b = write_sample_data(tmp_path / "b", scenes=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # Without scenes: byte for byte the committed sample_data/ the other tests use.
    plain = write_sample_data(tmp_path / "plain")
    committed = ROOT / "sample_data"
    for path in committed.rglob("*"):
        if path.is_file():
            assert (plain / path.relative_to(committed)).read_bytes() == path.read_bytes(), path
    # The edge cases: EXIF rotation, 16-bit TIFF, embedded imageData.
    with PIL.Image.open(plain / "phone" / "rotated_03.jpg") as image:
        assert image.getexif().get(0x0112) == 6
    with PIL.Image.open(plain / "images" / "micro_05.tif") as image:
        assert np.asarray(image).dtype == np.uint16
    assert json.loads((plain / "embedded_04.json").read_text())["imageData"]


def test_sample_scenes_have_touching_cells(demo_run) -> None:
    """Border weights matter only if same-class objects touch: the converted masks show it
    (in most scenes: 32 of the demo's 42)."""
    out, _ = demo_run
    dataset = out / "dataset"
    touching = 0
    for path in sorted((dataset / "SegmentationObject").glob("scenes__*.png")):
        objects = np.asarray(PIL.Image.open(path)).astype(int)
        classes = np.asarray(PIL.Image.open(dataset / "SegmentationClass" / path.name))
        cell = classes == 1
        # a cell pixel next to a pixel of another cell instance
        right = cell[:, :-1] & cell[:, 1:] & (objects[:, :-1] != objects[:, 1:])
        down = cell[:-1] & cell[1:] & (objects[:-1] != objects[1:])
        touching += bool(right.any() or down.any())
    assert touching >= 3


def test_demo_output_rules(tmp_path: Path) -> None:
    """New or empty folders start fresh, an earlier demo is redone, anything else refused."""
    from segkit.demo import DEMO_FILE, _check_output

    assert _check_output(tmp_path / "new") is False
    assert _check_output(tmp_path) is False  # empty
    (tmp_path / DEMO_FILE).write_text("{}")
    assert _check_output(tmp_path) is True
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(OptionError, match="symbolic link"):
        _check_output(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionError, match="not a folder"):
        _check_output(tmp_path / "file")
