"""Nothing from JSON content, labels, ids, image paths or an edited record writes or
deletes outside the output folder; links planted in it are replaced or refused, never
written through. Each test snapshots everything beside the output folder and checks
that it is untouched."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers_convert import run
from voc_builder import write_voc

from segkit._io import atomic_write_bytes, atomic_write_json
from segkit.checkpoint import save_checkpoint
from segkit.models import build_model
from segkit.ownership import stays_inside
from segkit.train.stage import _run_files


def _state(root: Path, skip: Path) -> dict[str, str]:
    """Every entry below ``root`` (links by target, files by hash), except ``skip``."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[key] = "-> " + os.readlink(path)
        elif path.is_file():
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[key] = "dir"
    return state


def _assert_contained(out: Path, planted: set[str] = frozenset()) -> None:
    """Every entry of ``out`` is a real file or folder inside it, or a link left as planted."""
    for path in out.rglob("*"):
        name = path.relative_to(out).as_posix()
        if path.is_symlink():
            assert name in planted, f"{name} is a link segkit made or kept"
        else:
            assert path.resolve().is_relative_to(out.resolve()), name


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file and a folder beside the output folder that links will point at."""
    (tmp_path / "victim_dir").mkdir()
    (tmp_path / "victim.txt").write_text("keep me\n")
    return tmp_path / "victim.txt"


def test_atomic_writes_replace_a_link_and_leave_its_target(tmp_path: Path, victim: Path) -> None:
    for name, write in (
        ("a.bin", lambda p: atomic_write_bytes(p, b"new")),
        ("b.json", lambda p: atomic_write_json(p, {"new": 1})),
    ):
        link = tmp_path / "out" / name
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(victim)
        write(link)
        assert not link.is_symlink() and link.stat().st_size > 0
        assert victim.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("masks/a.png", True),
        ("report.html", True),
        ("../x", False),
        ("masks/../../x", False),
        ("/etc/passwd", False),
        ("", False),
        ("a\0b", False),
        ("linked/a.png", False),  # a folder on the way is a link
    ],
)
def test_stays_inside(tmp_path: Path, name: str, inside: bool) -> None:
    (tmp_path / "linked").symlink_to(tmp_path.parent)
    assert stays_inside(tmp_path, name) is inside


def _labelme(label: str, image_path: str, data: bytes | None = None) -> str:
    shape = {"label": label, "points": [[1, 1], [5, 4]], "shape_type": "rectangle"}
    return json.dumps(
        {
            "shapes": [shape],
            "imagePath": image_path,
            "imageData": base64.b64encode(data).decode() if data else None,
            "imageHeight": 6,
            "imageWidth": 8,
        }
    )


@pytest.mark.filterwarnings("ignore:.*segkit did not write were kept:segkit.errors.SegkitNote")
def test_convert_hostile_paths_labels_and_planted_links(tmp_path: Path, victim: Path) -> None:
    """imagePath with ../ or absolute, labels like paths or with NUL: outputs are named by
    the JSON's stem, inside the output; a planted file link is kept (refused) or replaced."""
    picture = io.BytesIO()
    PIL.Image.new("RGB", (8, 6), (200, 10, 10)).save(picture, format="PNG")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "pic.png").write_bytes(picture.getvalue())
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "one.json").write_text(_labelme("../../x", "../elsewhere/pic.png"))
    (ann / "two.json").write_text(_labelme("/etc/x", str(tmp_path / "elsewhere" / "pic.png")))
    (ann / "three.json").write_text(_labelme("a\0b", "../../../../evil.png", picture.getvalue()))
    out = tmp_path / "out"
    (out / "JPEGImages").mkdir(parents=True)
    (out / "JPEGImages" / "one.jpg").symlink_to(victim)
    (out / "labels.txt").symlink_to(victim)
    before = _state(tmp_path, out)
    result = run("convert", ann, "-o", out, "--workers", "1", "--force")
    assert result.exit_code == 1, result.output
    assert "JPEGImages/one.jpg exists and was not written by segkit" in result.output
    assert _state(tmp_path, out) == before
    _assert_contained(out, planted={"JPEGImages/one.jpg"})
    assert sorted(p.name for p in (out / "SegmentationClass").iterdir()) == ["three.png", "two.png"]
    labels = (out / "labels.txt").read_text().splitlines()
    assert labels == ["__ignore__", "_background_", "../../x", "/etc/x", "a\0b"]


@pytest.mark.parametrize("sub", ["SegmentationClass", "JPEGImages"])
def test_convert_refuses_a_linked_output_folder(tmp_path: Path, victim: Path, sub: str) -> None:
    ann = tmp_path / "ann"
    ann.mkdir()
    picture = io.BytesIO()
    PIL.Image.new("RGB", (8, 6)).save(picture, format="PNG")
    (ann / "a.json").write_text(_labelme("cat", "a.png", picture.getvalue()))
    out = tmp_path / "out"
    out.mkdir()
    (out / sub).symlink_to(tmp_path / "victim_dir")
    before = _state(tmp_path, out)
    result = run("convert", ann, "-o", out, "--workers", "1", "--force")
    assert result.exit_code == 2
    assert f"{out / sub}: is a symbolic link" in result.output
    assert _state(tmp_path, out) == before


def _dataset(root: Path, ids: list[str]) -> Path:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 1
    return write_voc(
        root,
        {i: mask for i in ids},
        images={i: np.full((8, 8, 3), 90, np.uint8) for i in ids},
        classes=["_background_", "cat"],
        manifest={"source": "test"},
    )


def test_split_and_weights_replace_planted_links(tmp_path: Path, victim: Path) -> None:
    data = _dataset(tmp_path / "data", ["a", "b", "c", "d"])
    (data / "ImageSets/Segmentation").mkdir(parents=True)
    for name in ("train.txt", "val.txt"):
        (data / "ImageSets/Segmentation" / name).symlink_to(victim)
    (data / "weights.json").symlink_to(victim)
    before = _state(tmp_path, data)
    result = run("split", data, "--val", "0.5", "--reshuffle")  # the links are read, not kept
    assert result.exit_code == 0, result.output
    result = run("weights", data, "--border", "--force")
    assert result.exit_code == 0, result.output
    assert _state(tmp_path, data) == before
    _assert_contained(data)
    assert json.loads((data / "weights.json").read_text())["class_weights"]


@pytest.mark.parametrize(
    ("command", "sub"),
    [("split", "ImageSets/Segmentation"), ("weights", "SegmentationWeights")],
)
def test_split_and_weights_refuse_a_linked_folder(
    tmp_path: Path, victim: Path, command: str, sub: str
) -> None:
    data = _dataset(tmp_path / "data", ["a", "b", "c", "d"])
    if command == "weights":
        assert run("split", data, "--val", "0.5").exit_code == 0
    (data / sub).parent.mkdir(parents=True, exist_ok=True)
    if (data / sub).exists():
        for path in (data / sub).iterdir():
            path.unlink()
        (data / sub).rmdir()
    (data / sub).symlink_to(tmp_path / "victim_dir")
    before = _state(tmp_path, data)
    args = ["--val", "0.5"] if command == "split" else ["--border"]
    result = run(command, data, *args)
    assert result.exit_code == 2, result.output
    assert "is a symbolic link" in result.output
    assert _state(tmp_path, data) == before


def test_split_refuses_an_id_with_a_line_break(tmp_path: Path) -> None:
    """One id written as two lines would corrupt every split file."""
    data = _dataset(tmp_path / "data", ["a", "b", "c\nd"])
    result = run("split", data, "--val", "0.5")
    assert result.exit_code == 1
    assert "line breaks cannot be listed" in result.output
    assert not (data / "ImageSets").exists()


def test_report_never_deletes_what_an_edited_record_names_outside(
    tmp_path: Path, victim: Path
) -> None:
    data = _dataset(tmp_path / "data", ["a", "b"])
    out = tmp_path / "report"
    args = ["report", "--pred", data / "SegmentationClass", "--gt", data, "-o", out]
    assert run(*args, "--split", "all").exit_code == 0
    record = json.loads((out / "report.json").read_text())
    record["files"] += ["../victim.txt", str(victim), "overlays/../../victim.txt"]
    (out / "report.json").write_text(json.dumps(record))
    (out / "report.html").unlink()
    (out / "report.html").symlink_to(victim)  # dangling would be refused; this is replaced
    before = _state(tmp_path, out)
    result = run(*args, "--split", "all", "--worst", "0")
    assert result.exit_code == 0, result.output
    assert _state(tmp_path, out) == before
    _assert_contained(out)


def test_report_refuses_a_linked_overlays_folder(tmp_path: Path, victim: Path) -> None:
    data = _dataset(tmp_path / "data", ["a"])
    out = tmp_path / "report"
    out.mkdir()
    (out / "overlays").symlink_to(tmp_path / "victim_dir")
    before = _state(tmp_path, out)
    args = ["--pred", data / "SegmentationClass", "--gt", data, "-o", out, "--force"]
    result = run("report", *args)
    assert result.exit_code == 2, result.output
    assert "is a symbolic link" in result.output
    assert _state(tmp_path, out) == before


@pytest.fixture
def run_and_images(tmp_path: Path) -> tuple[Path, Path]:
    """A run with a tiny random checkpoint, and images (one in a sub-folder)."""
    run_dir = tmp_path / "run"
    torch.manual_seed(0)
    model = build_model("unet-tiny", 3, 2, base_channels=4)
    save_checkpoint(run_dir / "checkpoints" / "best", model, classes=["_background_", "cat"])
    (run_dir / "config.json").write_text("{}")
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        PIL.Image.new("RGB", (16, 16), (9, 99, 199)).save(images / name)
    return run_dir, images


def test_predict_edited_record_and_linked_sub_folder(
    tmp_path: Path, victim: Path, run_and_images: tuple[Path, Path]
) -> None:
    run_dir, images = run_and_images
    out = tmp_path / "pred"
    assert run("predict", run_dir, images, "-o", out, "--device", "cpu").exit_code == 0
    record = json.loads((out / "predictions.json").read_text())
    record["images"][0]["files"] += ["../victim.txt", str(victim), "masks/../../victim.txt"]
    (out / "predictions.json").write_text(json.dumps(record))
    # An earlier run's file the new one no longer writes is deleted: never these.
    (images / "a.png").unlink()
    before = _state(tmp_path, out)
    result = run("predict", run_dir, images, "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert _state(tmp_path, out) == before
    # A link planted where an image in a sub-folder writes its mask: refused.
    for folder in ("masks", "overlays"):
        for path in (out / folder / "sub").iterdir():
            path.unlink()
        (out / folder / "sub").rmdir()
        (out / folder / "sub").symlink_to(tmp_path / "victim_dir")
    before = _state(tmp_path, out)
    result = run("predict", run_dir, images, "-o", out, "--device", "cpu", "--force")
    assert result.exit_code != 0
    assert "is a symbolic link" in result.output
    assert _state(tmp_path, out) == before
    assert list((tmp_path / "victim_dir").iterdir()) == []


def test_train_run_record_cannot_name_files_outside(tmp_path: Path, victim: Path) -> None:
    """config.json's 'files' (what a new run deletes) only matches inside the run."""
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "best.safetensors").write_bytes(b"x")
    patterns = ["../victim.txt", str(victim), "../*", "checkpoints/../../*", "checkpoints/*"]
    assert _run_files(out, {"files": patterns}) == ["checkpoints/best.safetensors"]


def test_train_refuses_a_linked_checkpoints_folder(tmp_path: Path, victim: Path) -> None:
    data = _dataset(tmp_path / "data", ["a", "b", "c", "d"])
    assert run("split", data, "--val", "0.5").exit_code == 0
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints").symlink_to(tmp_path / "victim_dir")
    before = _state(tmp_path, out)
    result = run("train", data, "-o", out, "--epochs", "1", "--device", "cpu", "--force")
    assert result.exit_code == 2, result.output
    assert f"{out / 'checkpoints'}: is a symbolic link" in result.output
    assert _state(tmp_path, out) == before


def test_a_manifest_with_more_classes_than_a_mask_holds_is_refused(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data", ["a"])
    manifest = json.loads((data / "segkit.json").read_text())
    manifest["classes"] = ["_background_", *(f"c{i}" for i in range(999))]
    (data / "segkit.json").write_text(json.dumps(manifest))
    result = run("validate", data)
    assert result.exit_code == 1
    assert f"{data / 'segkit.json'}: 1000 classes; at most 255 fit a PNG mask" in result.output


def test_sample_data_refuses_a_link_planted_among_its_files(tmp_path: Path, victim: Path) -> None:
    from segkit.errors import OptionError
    from segkit.sample_data import write_sample_data

    out = write_sample_data(tmp_path / "demo" / "annotations", scenes=1)
    (out / "labels.txt").unlink()
    (out / "labels.txt").symlink_to(victim)
    with pytest.raises(OptionError, match=r"labels\.txt: is a symbolic link"):
        write_sample_data(out, scenes=1)
    assert victim.read_text() == "keep me\n"
