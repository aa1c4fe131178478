"""End to end with the real CLI: labelme → convert → split → weights → train → a complete run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
from helpers_convert import labelme_doc, shape, write_json

from segkit.checkpoint import load_checkpoint

ENTRY = "from segkit.cli import entry_point; entry_point()"


def segkit(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", ENTRY, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def labelme_folder(folder: Path, count: int, size: int = 32) -> None:
    """Images whose bright rectangles are 'square' and dark polygons 'tri', as labelled."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):
        picture = PIL.Image.fromarray(
            rng.normal(128, 10, (size, size, 3)).clip(0, 255).astype(np.uint8)
        )
        draw = PIL.ImageDraw.Draw(picture)
        x, y = (int(v) for v in rng.integers(2, size // 2 - 2, 2))
        rect = [[x, y], [x + size // 3, y + size // 3]]
        draw.rectangle([x, y, x + size // 3, y + size // 3], fill=(230, 230, 230))
        cx, cy = (int(v) for v in rng.integers(size // 2, size - 4, 2))
        tri = [[cx, cy - 6], [cx + 6, cy + 4], [cx - 6, cy + 4]]
        draw.polygon([tuple(p) for p in tri], fill=(20, 20, 20))
        name = f"scene{index:02d}"
        picture.save(folder / f"{name}.png")
        shapes = [shape("square", "rectangle", rect), shape("tri", "polygon", tri)]
        write_json(
            folder / f"{name}.json",
            labelme_doc(shapes, image_path=f"{name}.png", size=(size, size)),
        )
    (folder / "labels.txt").write_text("__ignore__\n_background_\nsquare\ntri\n")


def test_labelme_to_trained_model(tmp_path: Path):
    labelme_folder(tmp_path / "labelme", 16)
    dataset, run = tmp_path / "dataset", tmp_path / "run"
    steps = [
        (
            "convert",
            tmp_path / "labelme",
            "-o",
            dataset,
            "--labels",
            tmp_path / "labelme" / "labels.txt",
            "--workers",
            "1",
        ),
        ("split", dataset, "--val", "0.25", "--test", "0", "--workers", "1"),
        ("weights", dataset, "--border", "--workers", "1"),
    ]
    for step in steps:
        done = segkit(*step)
        assert done.returncode == 0, (step[0], done.stderr)
    done = segkit(
        "train", dataset, "-o", run, "--model", "unet-tiny", "--epochs", "10", "--batch-size", "4",
        "--lr", "0.01", "--no-augment", "--workers", "0", "--class-weights", "--border-weights",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # All-background prediction: IoU = background share for class 0, 0 for the others.
    matrix = np.array(json.loads((run / "confusion.json").read_text())["confusion"]["matrix"])
    baseline = matrix.sum(1)[0] / matrix.sum() / 3
    assert summary["final"]["mIoU"] > baseline + 0.2, (summary["final"], baseline)

    for name in ("config.json", "metrics.jsonl", "metrics.csv", "curves.png", "confusion_matrix.png",
                 "checkpoints/best.safetensors", "checkpoints/best.json",
                 "checkpoints/last.safetensors", "checkpoints/last.json", "state/resume.json"):  # fmt: skip
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["model"] == "unet-tiny" and config["determinism"]["seed"] == 0
    assert config["dataset"]["classes"] == ["_background_", "square", "tri"]
    assert config["dataset"]["manifest_sha256"] and config["versions"]["torch"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 10
    for column in ("train_loss", "val_loss", "mIoU", "aAcc", "IoU/square", "IoU/tri", "lr",
                   "images_per_s", "data_s", "compute_s", "wall_s"):  # fmt: skip
        assert column in rows[0], column
    assert PIL.Image.open(run / "curves.png").size[0] > 500

    loaded = load_checkpoint(run / "checkpoints" / "best")
    meta = loaded.meta
    assert meta.classes == ["_background_", "square", "tri"] and meta.model.in_channels == 3
    assert set(meta.normalization) == {"max_value", "mean", "std"}
    assert len(meta.extra["palette"]) == 3
    assert meta.epoch == summary["best_epoch"]
