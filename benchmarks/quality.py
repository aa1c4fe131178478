"""Quality in a fixed wall-clock budget: ``segkit train --time`` (defaults) vs a plain script.

Generates ~60 images of 256×256 (48 train / 12 val): clusters of touching round
"cells" (one class), bright rectangular "debris" and dark "fibre" strokes on a textured,
noisy background. Then, one after the other on the same machine:

1. **segkit**: ``segkit train DATASET -o RUN --time MINUTES`` with every other option at
   its default (a subprocess, so start-up, caching and validation all count);
2. **plain script**: the straightforward fp32 PyTorch loop people copy: the classic 31M
   U-Net (segkit's ``unet``: width 64, depth 4, BatchNorm), Adam 1e-3, batch 4, random
   flips, unweighted cross-entropy, full 256×256 images, validation after every epoch,
   stopped when the same budget (validation included) is spent.

Both curves (elapsed minutes → val mIoU) are printed; both use ``segkit.metrics`` on the
same 12 validation images. Run:

    python benchmarks/quality.py [--minutes 10] [--images 60] [--workdir bench_data/quality]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from scipy import ndimage

from segkit.metrics import ConfusionMatrix
from segkit.models import build_model
from segkit.voc import encode_palette_png

CLASSES = ("_background_", "cell", "debris", "fibre")


def scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image and its class mask."""
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(2, 4)):  # clusters of touching cells
        cy, cx = rng.uniform(20, size - 20, 2)
        for _ in range(rng.integers(3, 7)):
            r = rng.uniform(10, 18)
            angle = rng.uniform(0, 2 * np.pi)
            oy, ox = cy + 1.6 * r * np.sin(angle), cx + 1.6 * r * np.cos(angle)
            mask[(yy - oy) ** 2 + (xx - ox) ** 2 <= r * r] = 1
            cy, cx = oy, ox
    for _ in range(rng.integers(2, 5)):  # debris
        h, w = rng.integers(10, 24, 2)
        y, x = rng.integers(0, size - 24, 2)
        mask[y : y + h, x : x + w] = 2
    for _ in range(rng.integers(1, 3)):  # fibres
        y0, x0, y1, x1 = rng.uniform(0, size, 4)
        t = np.linspace(0, 1, 400)
        py, px = y0 + (y1 - y0) * t, x0 + (x1 - x0) * t + 12 * np.sin(6 * t)
        line = np.zeros((size, size), bool)
        inside = (py >= 0) & (py < size) & (px >= 0) & (px < size)
        line[py[inside].astype(int), px[inside].astype(int)] = True
        mask[ndimage.binary_dilation(line, iterations=3) & (mask == 0)] = 3
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 6) * 60
    base = np.stack([100 + texture, 95 + texture, 90 + texture], -1)
    colours = {1: (60, 25, 10), 2: (110, 110, 100), 3: (-60, -55, -40)}
    for cls, shift in colours.items():
        base[mask == cls] += shift
    inner = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 1.5) * 25
    base[mask == 1] += inner[mask == 1, None]
    image = ndimage.gaussian_filter(base, (1, 1, 0)) + rng.normal(0, 10, base.shape)
    return image.clip(0, 255).astype(np.uint8), mask


def make_dataset(root: Path, count: int, size: int = 256) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"scene{i:03d}" for i in range(count)]
    for sample_id in ids:
        image, mask = scene(rng, size)
        PIL.Image.fromarray(image).save(root / "JPEGImages" / f"{sample_id}.png")
        (root / "SegmentationClass" / f"{sample_id}.png").write_bytes(encode_palette_png(mask))
    (root / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    train = count * 4 // 5
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:train]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[train:]) + "\n")
    return root


def load(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = (root / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()
    images = np.stack([np.asarray(PIL.Image.open(root / "JPEGImages" / f"{i}.png")) for i in ids])
    masks = np.stack(
        [np.asarray(PIL.Image.open(root / "SegmentationClass" / f"{i}.png")) for i in ids]
    )
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.25, torch.from_numpy(masks).long()


def plain_script(root: Path, minutes: float, seed: int = 0) -> list[tuple[float, float]]:
    """The textbook loop; returns (elapsed minutes, val mIoU) after each epoch."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    x_train, y_train = load(root, "train")
    x_val, y_val = load(root, "val")
    model = build_model("unet", 3, len(CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    curve = []
    budget = minutes * 60
    while time.perf_counter() - start < budget:
        model.train()
        order = torch.randperm(len(x_train))
        for first in range(0, len(order) - 3, 4):
            if time.perf_counter() - start >= budget:
                break
            batch = order[first : first + 4]
            x, y = x_train[batch], y_train[batch]
            if torch.rand(1) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if torch.rand(1) < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        model.eval()
        matrix = ConfusionMatrix(len(CLASSES))
        with torch.inference_mode():
            for first in range(0, len(x_val), 4):
                matrix.update(y_val[first : first + 4], model(x_val[first : first + 4]).argmax(1))
        curve.append(((time.perf_counter() - start) / 60, matrix.scores().miou))
        print(f"  plain  {curve[-1][0]:6.2f} min  mIoU {curve[-1][1]:.4f}", flush=True)
    return curve


def segkit_run(root: Path, run: Path, minutes: float) -> list[tuple[float, float]]:
    start = time.perf_counter()
    command = [sys.executable, "-m", "segkit", "train", str(root), "-o", str(run),
               "--time", str(minutes), "--force", "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    total = (time.perf_counter() - start) / 60
    if done.returncode != 0:
        raise SystemExit(f"segkit train failed:\n{done.stderr}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    elapsed, curve = 0.0, []
    for row in rows:
        elapsed += row["wall_s"] / 60
        if row.get("mIoU") is not None:
            curve.append((elapsed, row["mIoU"]))
            print(f"  segkit {elapsed:6.2f} min  mIoU {row['mIoU']:.4f}")
    print(f"  segkit process wall time {total:.2f} min (start-up and final plots included)")
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--workdir", type=Path, default=Path("bench_data/quality"))
    parser.add_argument("--only", choices=("segkit", "plain"), default=None)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="intra-op threads for both sides (OMP_NUM_THREADS); default: torch's choice",
    )  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    root = args.workdir / "dataset"
    if not root.is_dir():
        make_dataset(root, args.images)
    print(f"{os.cpu_count()} CPU(s), torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {}
    if args.only in (None, "segkit"):
        print("segkit train --time", args.minutes)
        results["segkit"] = segkit_run(root, args.workdir / "run", args.minutes)
    if args.only in (None, "plain"):
        print("plain script (unet 31M, Adam 1e-3, batch 4, flips, CE)")
        results["plain"] = plain_script(root, args.minutes)
    for name, curve in results.items():
        best = max((m for _, m in curve), default=float("nan"))
        final = curve[-1][1] if curve else float("nan")
        print(f"{name:7s} final val mIoU {final:.4f}  best {best:.4f}  ({len(curve)} validations)")


if __name__ == "__main__":
    main()
