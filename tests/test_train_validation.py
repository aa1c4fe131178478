"""Validation during training: object scores as ``segkit report`` computes them, curves
refreshed after every validation, and valid-padding (overlap-tile) training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from helpers_train import make_voc
from scipy import ndimage
from torch import nn
from typer.testing import CliRunner

import segkit.train.stage as stage
from segkit.checkpoint import load_checkpoint
from segkit.cli import app
from segkit.dataset import open_dataset
from segkit.devices import resolve_runtime
from segkit.inference import predict_probabilities
from segkit.losses import build_loss
from segkit.models import registry
from segkit.models.unet import valid_output_size
from segkit.report.stage import ReportOptions, report
from segkit.train.augment import AugmentSettings
from segkit.train.data import EvalSet, TrainSet, scan_samples, split_files
from segkit.train.loop import evaluate
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


# -- valid padding: overlap-tile training ------------------------------------------------


def class_coded_voc(root: Path, size: int = 24) -> Path:
    """make_voc's masks, with images whose every channel is exactly 100 × class id."""
    make_voc(root, n_train=4, n_val=2, size=size)
    for path in (root / "SegmentationClass").glob("*.png"):
        mask = np.asarray(PIL.Image.open(path))
        image = np.repeat((mask.astype(np.uint8) * 100)[..., None], 3, axis=2)
        PIL.Image.fromarray(image).save(root / "JPEGImages" / path.name)
    return root


class CopyCentre(nn.Module):
    """A stand-in valid-padding network: its logits at each output pixel say the class
    coded in the input pixel it covers (the input tile's centre), nothing else."""

    padding, depth = "valid", 2

    def __init__(self, norm) -> None:
        super().__init__()
        self.norm = norm
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, x):
        out = valid_output_size(x.shape[-1], self.depth)
        m = (x.shape[-1] - out) // 2
        centre = x[:, :1, m : m + out, m : m + out]
        value = centre * self.norm.std[0] + self.norm.mean[0]
        ids = (value * 255 / 100).round().long().clamp(0, 2)[:, 0]
        return 50.0 * F.one_hot(ids, 3).permute(0, 3, 1, 2).float() + 0 * self.anchor


def test_valid_padding_tiles_align_targets_with_the_output(tmp_path: Path):
    dataset = class_coded_voc(tmp_path / "voc")
    data = open_dataset(dataset)
    train, val = split_files(data, "train"), split_files(data, "val")
    scan = scan_samples(train, val, 3)
    model = CopyCentre(scan.normalization)
    out, size = stage._tiles(model, 20)
    assert (out, size) == (20, 60)  # depth 2: 60 px in → 20 px out
    plain = TrainSet(train, scan, AugmentSettings(crop=size, enabled=False), output_crop=out)
    images, masks, _ = zip(*(plain[(i, 7 * i)] for i in range(len(train))), strict=True)
    images, masks = torch.stack(images), torch.stack(masks)
    assert images.shape[-1] == 60 and masks.shape[-1] == 20
    labelled = masks != 255
    assert labelled.float().mean() > 0.5
    # The copy model predicts every labelled target pixel: the loss sees aligned pixels.
    predicted = model(images).argmax(1)
    assert torch.equal(predicted[labelled], masks[labelled])
    loss = build_loss("ce")(model(images), masks).detach()
    assert float(loss) < 1e-6
    # With the default augmentation (rotation, elastic, colour) alignment holds up to
    # interpolation at region edges.
    augmented = TrainSet(train, scan, AugmentSettings(crop=size), output_crop=out)
    agree = total = 0
    for i in range(len(train)):
        image, mask, _ = augmented[(i, 11 + i)]
        keep = mask != 255
        agree += int((model(image[None]).argmax(1)[0] == mask)[keep].sum())
        total += int(keep.sum())
    assert agree / total > 0.95
    # Validation runs the mirrored overlap-tile on whole images: perfect scores.
    loader = ((image[None], mask[None]) for image, mask in EvalSet(val, scan))
    matrix, _, _ = evaluate(model, loader, num_classes=3, runtime=resolve_runtime("cpu"))
    assert matrix.scores().miou == 1.0


def test_unet_valid_trains_end_to_end(tmp_path: Path, monkeypatch):
    # A 4-wide, depth-2 valid U-Net under the registry name keeps the run to seconds.
    spec = registry.get_spec("unet-valid")
    small = dict(spec.defaults, base_channels=4, depth=2)
    monkeypatch.setitem(registry._SPECS, "unet-valid", replace(spec, defaults=small))
    dataset = make_voc(tmp_path / "voc", n_train=4, n_val=2, size=24)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", str(dataset), "-o", str(run), "--model", "unet-valid", "--epochs", "2",
         "--batch-size", "2", "--workers", "0", "--crop", "20"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "60 px input tiles" in result.stderr
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    assert (resolved["crop"], resolved["input_crop"]) == (20, 60)
    final = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["epoch"] == 2 and final["mIoU"] is not None and final["train_loss"] > 0
    loaded = load_checkpoint(run / "checkpoints" / "last")
    image = torch.zeros(3, 24, 24)
    assert predict_probabilities(loaded.model, image).shape == (3, 24, 24)
