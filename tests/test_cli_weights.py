"""`segkit weights` through the real CLI: output, files, and one clear line on bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from test_weights_stage import make_voc, synthetic_masks
from typer.testing import CliRunner

from segkit.cli import app
from segkit.voc import encode_palette_png, encode_uint16_png

runner = CliRunner()


def invoke(root: Path, *options: str):
    return runner.invoke(app, ["weights", str(root), "--workers", "1", *options])


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_one_error(result, *fragments: str, code: int = 1) -> None:
    """One ``error:`` line on stderr; exit 1 (bad data) or 2 (bad option or path)."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def write_class_mask(root: Path, stem: str, mask: np.ndarray) -> None:
    (root / "SegmentationClass" / f"{stem}.png").write_bytes(encode_palette_png(mask))


# ----------------------------------------------------------------------------- output


def test_table_and_weights_file(tmp_path: Path):
    make_voc(tmp_path)
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    for text in ("_background_", "cell", "debris", "frequency", "weight", "median-frequency"):
        assert text in result.stdout
    assert "no split files" in result.stderr
    assert "weights.json only" in result.stderr
    assert (tmp_path / "weights.json").is_file()


def test_json_summary(tmp_path: Path):
    make_voc(tmp_path, splits={"train": [0, 1], "val": [2, 3]}, manifest=True)
    result = invoke(tmp_path, "--json", "--scheme", "enet", "--border", "--viz")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["split"] == "train" and summary["num_images"] == 2
    assert summary["scheme"] == "enet" and len(summary["class_weights"]) == 3
    assert summary["maps_written"] == 2 and summary["viz_written"] == 2
    assert summary["manifest_updated"] is True
    assert sorted(p.name for p in (tmp_path / "SegmentationWeights").glob("*.npy")) == [
        "img0.npy",
        "img1.npy",
    ]
    again = json.loads(invoke(tmp_path, "--json", "--scheme", "enet", "--border").stdout)
    assert again["maps_written"] == 0 and again["maps_unchanged"] == 2


def test_effective_number_beta_and_binary(tmp_path: Path):
    make_voc(tmp_path, classes=("_background_", "cell"))
    for i in range(4):
        cls, _ = synthetic_masks(i)
        write_class_mask(tmp_path, f"img{i}", np.where(cls == 2, 1, cls))
    result = invoke(tmp_path, "--scheme", "effective-number", "--beta", "0.999")
    assert result.exit_code == 0, result.output
    assert "beta=0.999" in result.stdout and "pos_weight" in result.stdout


def test_unnamed_classes_count_ids_of_every_split(tmp_path: Path):
    make_voc(tmp_path, classes=None, splits={"train": [0, 1], "val": [2, 3]})
    cls, _ = synthetic_masks(3)
    write_class_mask(tmp_path, "img3", np.where(cls == 2, 3, cls))  # id 3 only in val
    train = invoke(tmp_path, "--json")
    val = invoke(tmp_path, "--json", "--split", "val")
    assert train.exit_code == 0 and val.exit_code == 0, train.output + val.output
    train_weights = json.loads(train.stdout)["class_weights"]
    assert len(train_weights) == len(json.loads(val.stdout)["class_weights"]) == 4
    assert train_weights[3] == max(train_weights[:3])  # zero-pixel rule


def test_without_instance_masks_falls_back_to_components(tmp_path: Path):
    make_voc(tmp_path, 2, objects=False)
    result = invoke(tmp_path, "--border", "--border-on", "all")
    assert result.exit_code == 0, result.output
    assert "8-connected components" in result.stderr
    assert "2 from class components" in result.stdout
    assert len(list((tmp_path / "SegmentationWeights").glob("*.npy"))) == 2


def test_subprocess_with_worker_processes(tmp_path: Path):
    make_voc(tmp_path, 4)
    entry = "from segkit.cli import main; main()"
    command = [sys.executable, "-c", entry, "weights", str(tmp_path), "--border", "--json"]
    done = subprocess.run([*command, "--workers", "2"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["maps_written"] == 4
    (tmp_path / "SegmentationClass" / "img0.png").write_bytes(b"")
    failed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["ok"] is False  # --json: a document also on failure
    assert failed.stderr.strip().count("\n") == 0 and "img0.png" in failed.stderr


# -------------------------------------------------------------------------- bad input


def test_no_masks(tmp_path: Path):
    (tmp_path / "JPEGImages").mkdir()
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(buffer.getvalue())
    before = snapshot(tmp_path)
    assert_one_error(invoke(tmp_path), "SegmentationClass", "no class masks")
    assert snapshot(tmp_path) == before


def test_not_a_dataset(tmp_path: Path):
    assert_one_error(invoke(tmp_path), "is this a VOC dataset?")
    assert_one_error(invoke(tmp_path / "missing"), "dataset folder not found", code=2)


def test_ids_out_of_range(tmp_path: Path):
    make_voc(tmp_path)
    cls, _ = synthetic_masks(1)
    cls[5, 5] = 7
    cls[6, 6] = 3
    write_class_mask(tmp_path, "img1", cls)
    before = snapshot(tmp_path)
    result = invoke(tmp_path, "--border")
    assert_one_error(result, "img1.png", "class id(s) 3, 7 out of range 0..2", "nothing written")
    assert snapshot(tmp_path) == before


def test_empty_mask_file(tmp_path: Path):
    make_voc(tmp_path)
    (tmp_path / "SegmentationClass" / "img2.png").write_bytes(b"")
    before = snapshot(tmp_path)
    assert_one_error(invoke(tmp_path, "--border"), "img2.png", "cannot read mask")
    assert snapshot(tmp_path) == before


def test_all_ignore(tmp_path: Path):
    make_voc(tmp_path, 2)
    for i in range(2):
        write_class_mask(tmp_path, f"img{i}", np.full((8, 8), 255, dtype=np.uint8))
    before = snapshot(tmp_path)
    assert_one_error(invoke(tmp_path), "no labelled pixels", "255 = ignore")
    assert snapshot(tmp_path) == before


def test_rgb_mask(tmp_path: Path):
    make_voc(tmp_path, 2)
    PIL.Image.new("RGB", (48, 40), (128, 0, 0)).save(tmp_path / "SegmentationClass" / "img0.png")
    assert_one_error(invoke(tmp_path), "img0.png", "RGB colour image")


def test_instance_mask_of_another_size(tmp_path: Path):
    make_voc(tmp_path, 2)
    (tmp_path / "SegmentationObject" / "img1.png").write_bytes(
        encode_palette_png(np.zeros((10, 10), dtype=np.uint8))
    )
    before = snapshot(tmp_path)
    assert_one_error(invoke(tmp_path, "--border"), "img1.png", "differs from the class mask")
    assert snapshot(tmp_path) == before
    # without --border the instance masks are not needed
    assert invoke(tmp_path).exit_code == 0


def test_split_problems(tmp_path: Path):
    make_voc(tmp_path, 3, splits={"train": [0, 1]})
    train = tmp_path / "ImageSets" / "Segmentation" / "train.txt"
    train.write_text("img0\nghost\n")
    assert_one_error(invoke(tmp_path), "train.txt", "not in the dataset", "ghost")
    train.write_text("")
    assert_one_error(invoke(tmp_path), "split 'train' is empty")
    assert_one_error(invoke(tmp_path, "--split", "val"), "val.txt", "split file not found")
    (tmp_path / "SegmentationClass" / "img1.png").unlink()
    train.write_text("img0\nimg1\n")
    (tmp_path / "JPEGImages" / "img1.jpg").write_bytes(b"")  # the image exists, its mask not
    assert_one_error(invoke(tmp_path), "no class mask", "img1")


def test_failed_run_keeps_previous_outputs(tmp_path: Path):
    make_voc(tmp_path)
    assert invoke(tmp_path, "--border").exit_code == 0
    (tmp_path / "SegmentationClass" / "img3.png").write_bytes(b"\x89PNG broken")
    before = snapshot(tmp_path)
    assert_one_error(invoke(tmp_path, "--border", "--sigma", "3"), "img3.png")
    assert snapshot(tmp_path) == before


def test_foreign_maps_folder(tmp_path: Path):
    make_voc(tmp_path, 2)
    (tmp_path / "SegmentationWeights").mkdir()
    (tmp_path / "SegmentationWeights" / "notes.txt").write_text("mine")
    assert_one_error(invoke(tmp_path, "--border"), "SegmentationWeights", "--force")
    assert invoke(tmp_path, "--border", "--force").exit_code == 0
    assert (tmp_path / "SegmentationWeights" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--sigma", "0"], "--sigma must be"),
        (["--w0", "-1"], "--w0 must be"),
        (["--beta", "1.5"], "--beta must be in [0, 1)"),
        (["--scheme", "pos-weight"], "binary tasks"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--split", "../../x"], "--split takes a split name"),
    ],
)
def test_bad_options(tmp_path: Path, options: list[str], fragment: str):
    make_voc(tmp_path, 1)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["weights", str(tmp_path), *options])
    assert_one_error(result, fragment, code=2)
    assert snapshot(tmp_path) == before


def test_unknown_scheme_is_a_usage_error(tmp_path: Path):
    make_voc(tmp_path, 1)
    result = invoke(tmp_path, "--scheme", "sqrt")
    assert result.exit_code == 2
    assert "median-frequency" in result.output


def test_markup_in_the_dataset_path_is_printed_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)  # a short relative path keeps the title on one line
    make_voc(tmp_path / "[b]ds", 2, splits={"[i]train": [0, 1]})
    result = invoke(Path("[b]ds"), "--split", "[i]train")
    assert result.exit_code == 0, result.output
    assert "segkit weights → [b]ds (split [i]train, 2 images)" in result.stdout


def test_sixteen_bit_class_mask(tmp_path: Path):
    make_voc(tmp_path, 2)
    cls, _ = synthetic_masks(1)
    (tmp_path / "SegmentationClass" / "img1.png").write_bytes(encode_uint16_png(cls))
    assert_one_error(invoke(tmp_path), "img1.png", "class mask has mode 'I;16'", "8-bit")


def test_split_file_in_another_encoding(tmp_path: Path):
    make_voc(tmp_path, 3, splits={"train": [0, 1]})
    train = tmp_path / "ImageSets" / "Segmentation" / "train.txt"
    train.write_bytes("img0\nbœuf\n".encode("cp1252"))
    assert_one_error(invoke(tmp_path), "train.txt", "split file is not UTF-8 text")
