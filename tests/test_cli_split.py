"""`segkit split` through the real CLI: table, JSON, errors as one line, convert → split."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_split_stage import SPLITS, make_voc, read_split, simple_masks, snapshot
from typer.testing import CliRunner

from segkit.cli import app
from segkit.voc import encode_uint16_png

runner = CliRunner()
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


def split(*args: str):
    return runner.invoke(app, ["split", *args])


def test_table_shows_images_groups_and_class_shares(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks(), manifest=True)
    result = split(str(root), "--val", "0.2", "--test", "0.1", "--seed", "0", "--workers", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for word in ("split", "images", "groups", "train", "val", "test", "cat", "fish", "(1)"):
        assert word in out
    assert "30 images in 30 groups (near-duplicate images)" in out
    assert "wrote ImageSets/Segmentation/ train.txt val.txt trainval.txt test.txt" in out
    assert "recorded in segkit.json" in out
    assert result.stderr.strip() == ""
    again = split(str(root), "--workers", "1")
    assert again.exit_code == 0, again.output
    assert "split files already up to date" in again.stdout
    assert "kept 30, placed 0" in again.stdout


def test_json_output(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    result = split(str(root), "--json", "--seed", "4", "--workers", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 30 and report["groups"] == 30
    assert [s["name"] for s in report["splits"]] == ["train", "val", "test"]
    assert [s["images"] for s in report["splits"]] == [21, 6, 3]
    val = report["splits"][1]
    assert val["target_fraction"] == 0.2 and val["images_with_class"]["fish"] == 1
    assert sum(s["pixel_share"]["fish"] for s in report["splits"]) == pytest.approx(1, abs=1e-5)
    assert report["uncovered"] == [] and report["record"] == f"{SPLITS}/splits.json"
    assert read_split(root, "val") == sorted(
        json.loads((root / SPLITS / "splits.json").read_text())["val"]
    )


def test_folds_and_group_by_through_the_cli(tmp_path) -> None:
    masks = {f"vid{v}_frame{f:02d}": {0, 1 + (v + f) % 4} for v in range(6) for f in range(5)}
    root = make_voc(tmp_path / "voc", masks)
    result = split(
        str(root), "--folds", "3", "--test", "0.2", "--group-by", r"^(vid\d+)_", "--workers", "1"
    )
    assert result.exit_code == 0, result.output
    assert "fold k validates on its row and trains on the other folds" in " ".join(
        result.stdout.split()
    )
    video = lambda name: {s.split("_")[0] for s in read_split(root, name)}  # noqa: E731
    for k in range(3):
        assert video(f"fold{k}_val") and not video(f"fold{k}_val") & video(f"fold{k}_train")
        assert video(f"fold{k}_val") | video(f"fold{k}_train") == video("trainval")
    assert len(video("test")) == 1 and not video("test") & video("trainval")


def test_warnings_go_to_stderr(tmp_path) -> None:
    masks = {**simple_masks(), "lonely": {0, 1}}
    root = make_voc(tmp_path / "voc", masks)
    result = split(str(root), "--group-by", r"^(img00)\d", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "warning: --group-by matched 10 of 31 stems" in result.stderr


BAD = [
    (["--val", "1.5"], r"--val must be in (0, 1), got 1.5"),
    (["--val", "0"], r"--val must be in (0, 1), got 0.0"),
    (["--val", "0.6", "--test", "0.4"], "add up to 1; must be < 1"),
    (["--test", "-0.1"], r"--test must be in [0, 1)"),
    (["--folds", "1"], "--folds must be at least 2"),
    (["--folds", "3", "--val", "0.2"], "exclude each other"),
    (["--group-by", "img"], "has no capture group"),
    (["--group-by", "^(patient\\d+)_"], "matches none of the 30 stems"),
    (["--group-by", "(["], "not a valid regular expression"),
    (["--groups", "missing.csv"], "missing.csv: file not found"),
    (["--groups", "g.csv", "--group-by", "(x)"], "exclude each other"),
    (["--workers", "0"], "--workers must be at least 1"),
]
#: Options fine in themselves that this dataset cannot satisfy: a data problem (exit 1).
TOO_FEW = [(["--folds", "40"], "30 group(s) of images cannot fill 41 splits")]


@pytest.mark.parametrize(
    ("args", "message", "code"), [(*bad, 2) for bad in BAD] + [(*bad, 1) for bad in TOO_FEW]
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, message, code) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    before = snapshot(root)
    result = split(str(root), *args)
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert snapshot(root) == before


def test_bad_dataset_is_one_line(tmp_path) -> None:
    result = split(str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope'}: dataset folder not found"
    few = make_voc(tmp_path / "few", {"a": {0}, "b": {1}})
    result = split(str(few), "--workers", "1")
    assert result.exit_code == 1 and "cannot fill 3 splits" in result.stderr
    assert not (few / SPLITS).exists()


def test_real_process_exit_code(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    command = [sys.executable, "-m", "segkit", "split", str(root)]
    bad = subprocess.run([*command, "--val", "2"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --val must be")
    good = subprocess.run([*command, "--workers", "2", "--json"], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["images"] == 30


def test_dataset_from_segkit_convert(tmp_path) -> None:
    out = tmp_path / "dataset"
    converted = runner.invoke(app, ["convert", str(SAMPLE_DATA), "-o", str(out), "--workers", "1"])
    assert converted.exit_code == 0, converted.output
    result = split(str(out), "--val", "0.2", "--test", "0.1", "--seed", "0", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    stems = sorted(p.stem for p in (out / "SegmentationClass").glob("*.png"))
    assert report["images"] == len(stems) == 6
    listed = read_split(out, "train") + read_split(out, "val") + read_split(out, "test")
    assert sorted(listed) == stems
    manifest = json.loads((out / "segkit.json").read_text())
    assert manifest["splits"]["params"]["seed"] == 0
    assert "convert" in manifest and len(manifest["samples"]) == 6

    # A copy split with the same seed is byte-identical; validate finds no split problems.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "ImageSets")
    del manifest["splits"]
    (copy / "segkit.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    assert split(str(copy), "--seed", "0").exit_code == 0
    for name in ("train", "val", "test", "trainval"):
        assert (copy / SPLITS / f"{name}.txt").read_bytes() == (
            out / SPLITS / f"{name}.txt"
        ).read_bytes()
    assert (copy / "segkit.json").read_bytes() == (out / "segkit.json").read_bytes()
    checked = runner.invoke(app, ["validate", str(out), "--json", "--workers", "1"])
    findings = json.loads(checked.stdout)["findings"]
    assert not [f for f in findings if f["check"].startswith("split")], findings


def test_markup_in_paths_and_patterns_is_printed_literally(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short relative path keeps the title on one line
    masks = {f"vid{v}_frame{f}": {0, 1 + (v + f) % 4} for v in range(6) for f in range(3)}
    make_voc(tmp_path / "[b]ds", masks)
    result = split("[b]ds", "--group-by", r"^([a-z]+\d)_", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "segkit split → [b]ds" in result.stdout
    assert r"(regex ^([a-z]+\d)_)" in result.stdout


def test_sixteen_bit_class_mask_is_one_error_line(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    wide = np.zeros((24, 24), np.uint16)
    (root / "SegmentationClass" / "img002.png").write_bytes(encode_uint16_png(wide))
    result = split(str(root), "--workers", "1")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "img002.png: class mask has mode 'I;16'" in lines[0], lines


def test_split_file_in_another_encoding_is_one_error_line(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    (root / SPLITS).mkdir(parents=True)
    (root / SPLITS / "train.txt").write_bytes("img001\nbœuf\n".encode("cp1252"))
    result = split(str(root), "--workers", "1")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.txt: split file is not UTF-8 text" in lines[0], lines
