"""Validation during training: object scores as ``segkit report`` computes them, curves
refreshed after every validation, and valid-padding (overlap-tile) training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
from helpers_train import make_voc
from scipy import ndimage

import segkit.train.stage as stage
from segkit.report.stage import ReportOptions, report
from segkit.voc import encode_palette_png


def add_instance_masks(root: Path) -> None:
    """SegmentationObject/: every connected region of a class is one instance."""
    (root / "SegmentationObject").mkdir()
    for path in sorted((root / "SegmentationClass").glob("*.png")):
        mask = np.asarray(PIL.Image.open(path))
        instances = np.zeros(mask.shape, np.uint8)
        for cls in (1, 2):
            labels, _ = ndimage.label(mask == cls)
            instances[labels > 0] = labels[labels > 0] + instances.max()
        (root / "SegmentationObject" / path.name).write_bytes(encode_palette_png(instances))


def test_object_scores_match_report_and_curves_exist_after_each_validation(tmp_path: Path):
    dataset = make_voc(tmp_path / "voc", n_train=4, n_val=2, size=32)
    add_instance_masks(dataset)
    run = tmp_path / "run"
    curves_seen = []

    def on_event(event):
        if event.kind == "epoch_end":
            png = run / "curves.png"
            curves_seen.append(png.is_file() and PIL.Image.open(png).size[0] > 500)

    summary = stage.train(
        dataset, run, model="unet-tiny", epochs=2, batch_size=2, workers=0, lr=0.01,
        augment=False, monitor="object_F1", on_event=on_event,
    )  # fmt: skip
    assert curves_seen == [True, True]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    for key in ("object_F1", "object_precision", "object_recall", "object_merges",
                "object_splits", "F1/square", "F1/disc"):  # fmt: skip
        assert key in last, key
    assert summary.monitor == "object_F1" and summary.best_score is not None
    # The same numbers as segkit report on the last checkpoint and the val split.
    done = report(run, tmp_path / "report", ReportOptions(checkpoint="last", device="cpu"))
    pooled = done.report["objects"]["scores"]["pooled"]
    assert last["object_F1"] == pooled["f1"]
    assert last["object_precision"] == pooled["precision"]
    assert (last["object_merges"], last["object_splits"]) == (pooled["merges"], pooled["splits"])
    assert last["mIoU"] == done.report["pixel"]["mIoU"]
