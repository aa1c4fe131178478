"""Pipeline overhead of ``segkit train`` and data-loading speed.

1. **bare loop**: the same registry model, batch, precision and memory format, trained
   with AdamW on one batch of random tensors held in memory (forward, loss, backward,
   step): the compute floor.
2. **segkit train**: the real stage on a generated dataset of real files (PNG images or
   ``--jpeg``), cache, augmentation, DataLoader, loss, clipping and the per-step loss
   check included; images/s from its ``metrics.jsonl`` (data + compute seconds of the
   last epoch, validation excluded).
3. **data loading**: images/s of the training DataLoader alone (decode from disk, cache
   off, augmentation on) with 0, 1 and 2 workers.

Prints images/s of each and the overhead of segkit over the bare loop (target ≤ 10 %).
On a CUDA machine it also samples GPU utilisation with ``nvidia-smi`` during the segkit
run (target ≥ 90 % for the default U-Net at batch 8, 512×512). Run:

    python benchmarks/train.py [--size 256] [--images 32] [--batch 8] [--epochs 3]
                               [--model unet-small] [--device auto] [--jpeg]
                               [--repeat N] [--no-loading] [--time-budget SECONDS]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from segkit.devices import resolve_runtime
from segkit.losses import build_loss
from segkit.models import build_model
from segkit.train.augment import AugmentSettings
from segkit.train.data import EpochSampler, TrainSet, scan_samples, seed_worker, split_files
from segkit.voc import encode_palette_png


def make_dataset(root: Path, count: int, size: int, jpeg: bool) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    ids = [f"img{i:04d}" for i in range(count)]
    for sample_id in ids:
        mask = np.zeros((size, size), np.uint8)
        for _ in range(6):
            cy, cx = rng.integers(0, size, 2).tolist()
            r = int(rng.integers(size // 16, size // 6))
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(1, 3)
        image = rng.normal(110, 20, (size, size, 3)) + (mask[..., None] * 40)
        picture = PIL.Image.fromarray(image.clip(0, 255).astype(np.uint8))
        picture.save(root / "JPEGImages" / f"{sample_id}.{'jpg' if jpeg else 'png'}")
        (root / "SegmentationClass" / f"{sample_id}.png").write_bytes(encode_palette_png(mask))
    (root / "class_names.txt").write_text("_background_\na\nb\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[:2]) + "\n")
    return root


def bare_loop(args: argparse.Namespace, steps: int) -> float:
    """Images/s of forward + loss + backward + AdamW step on in-memory tensors."""
    runtime = resolve_runtime(args.device, args.precision)
    torch.manual_seed(0)
    model = runtime.prepare_model(build_model(args.model, 3, 3)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = build_loss("ce+dice").to(runtime.device)
    images = torch.randn(args.batch, 3, args.size, args.size)
    target = torch.randint(0, 3, (args.batch, args.size, args.size), device=runtime.device)
    scaler = torch.amp.GradScaler("cuda") if runtime.needs_grad_scaler else None

    def step() -> None:
        with runtime.autocast():
            out = model(runtime.prepare_input(images))
        loss = loss_fn(out, target)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # segkit reads the loss every step too

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * args.batch / (time.perf_counter() - start)


class GpuSampler(threading.Thread):
    """Samples ``nvidia-smi`` utilisation every 0.2 s until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(int(out.stdout.split()[0]))
            time.sleep(0.2)


def segkit_run(args: argparse.Namespace, dataset: Path, work: Path) -> tuple[float, list[int]]:
    from segkit.train.stage import train

    sampler = GpuSampler() if torch.cuda.is_available() and shutil.which("nvidia-smi") else None
    if sampler:
        sampler.start()
    train(
        dataset, work / "run", model=args.model, epochs=args.epochs, batch_size=args.batch,
        crop=args.size, device=args.device, precision=args.precision, loss="ce+dice",
        val_every=args.epochs, workers=args.workers,
    )  # fmt: skip
    if sampler:
        sampler.stop.set()
        sampler.join()
    last = json.loads((work / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    return last["images_per_s"], (sampler.samples if sampler else [])


def loading(dataset: Path, size: int, workers: int, batch: int) -> float:
    from segkit.dataset import open_dataset

    data = open_dataset(dataset)
    train = split_files(data, "train")
    scan = scan_samples(train, [], 3, cache=False)
    items = TrainSet(train, scan, AugmentSettings(crop=size))
    sampler = EpochSampler(len(train), seed=0, epoch=0)
    loader = torch.utils.data.DataLoader(
        items, batch_sampler=torch.utils.data.BatchSampler(sampler, batch, drop_last=True),
        num_workers=workers, worker_init_fn=seed_worker,
    )  # fmt: skip
    start = time.perf_counter()
    count = sum(images.shape[0] for images, _, _ in loader)
    return count / (time.perf_counter() - start)


def budget_check(args: argparse.Namespace, dataset: Path, work: Path) -> None:
    """Wall time of whole ``segkit.train`` calls under ``--time`` against the budget."""
    from segkit.train.stage import train

    for _ in range(args.repeat):
        shutil.rmtree(work / "run", ignore_errors=True)
        start = time.perf_counter()
        summary = train(
            dataset, work / "run", model=args.model, time_minutes=args.time_budget / 60,
            batch_size=args.batch, device=args.device, workers=args.workers,
        )  # fmt: skip
        took = time.perf_counter() - start
        print(f"budget {args.time_budget:.0f} s: segkit.train took {took:.1f} s "
              f"({100 * (took / args.time_budget - 1):+.1f} %), {summary.epochs} epochs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="unet-small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--jpeg", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="alternate both sides N times")
    parser.add_argument("--no-loading", action="store_true", help="skip the DataLoader timing")
    parser.add_argument(
        "--time-budget", type=float, default=None,
        help="instead: time segkit.train(time_minutes=S/60) --repeat times against S seconds",
    )  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segkit-train-bench-"))
    try:
        dataset = make_dataset(work / "data", args.images, args.size, args.jpeg)
        if args.time_budget is not None:
            budget_check(args, dataset, work)
            return
        print(f"model {args.model}, batch {args.batch}, {args.size}×{args.size}, "
              f"device {resolve_runtime(args.device, args.precision).device}")  # fmt: skip
        rates, floors, util = [], [], []
        # Alternating the two sides spreads a shared machine's load changes over both.
        for _ in range(args.repeat):
            shutil.rmtree(work / "run", ignore_errors=True)
            rate, samples = segkit_run(args, dataset, work)
            floor = bare_loop(args, steps=max(3, args.images // args.batch))
            rates.append(rate)
            floors.append(floor)
            util += samples
            print(f"  bare loop {floor:6.1f} img/s, segkit train {rate:6.1f} img/s, "
                  f"overhead {100 * (floor / rate - 1):+.1f} %")  # fmt: skip
        floor, rate = float(np.median(floors)), float(np.median(rates))
        overhead = float(np.median([f / r - 1 for f, r in zip(floors, rates, strict=True)]))
        print(f"bare loop     {floor:8.1f} img/s (median of {len(floors)})")
        print(f"segkit train  {rate:8.1f} img/s   overhead {100 * overhead:+.1f} % (median)")
        if util:
            print(f"GPU utilisation during segkit train: mean {np.mean(util):.0f} %, "
                  f"median {np.median(util):.0f} % ({len(util)} samples)")  # fmt: skip
        for workers in () if args.no_loading else (0, 1, 2):
            print(f"data loading, {workers} worker(s): "
                  f"{loading(dataset, args.size, workers, args.batch):8.1f} img/s")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
