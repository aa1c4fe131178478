"""Time `segkit validate` on a generated VOC dataset of a few thousand small images.

Builds (once, reused on later runs) a clean dataset: JPEG images, palette class and
instance masks, split files. Then times, on the same files:

1. ``validate`` with one worker process,
2. ``validate`` with all usable cores (process start-up included),
3. for context, a plain loop that fully decodes every image and mask with Pillow and
   does nothing else: the floor an ad-hoc single-process checker starts from.

Prints wall seconds, images/s and CPU seconds (this process plus its reaped worker
processes; less sensitive than wall time to other load on the machine) for each. The
page cache is warmed first, so this measures decoding and checking, not the disk. Run:

    python benchmarks/validate.py [--images 3000] [--size 320x240] [--workdir bench_data/validate]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image

from segkit.dataset import open_dataset
from segkit.parallel import default_workers
from segkit.validate_stage import validate
from segkit.voc import encode_palette_png


def make_dataset(root: Path, images: int, size: tuple[int, int]) -> None:
    """Write ``images`` JPEG + class/instance mask triples and train/val lists (deterministic)."""
    width, height = size
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    stems = []
    for index in range(images):
        stem = f"img_{index:05d}"
        stems.append(stem)
        # A random low-frequency pattern per image, so perceptual hashes differ.
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(small).resize((width, height), PIL.Image.Resampling.BILINEAR)
        image.save(root / "JPEGImages" / f"{stem}.jpg", quality=90)
        cls = np.zeros((height, width), np.uint8)
        obj = np.zeros((height, width), np.uint8)
        for instance in range(1, 6):
            cx, cy = rng.integers(0, width), rng.integers(0, height)
            radius = rng.integers(8, 40)
            disk = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
            cls[disk] = 1 + instance % 3
            obj[disk] = instance
        # Later disks overwrite earlier ones, so every instance keeps one class.
        (root / "SegmentationClass" / f"{stem}.png").write_bytes(encode_palette_png(cls))
        (root / "SegmentationObject" / f"{stem}.png").write_bytes(encode_palette_png(obj))
    (root / "class_names.txt").write_text("_background_\na\nb\nc\n", encoding="utf-8")
    cut = int(len(stems) * 0.8)
    splits = {"train": stems[:cut], "val": stems[cut:], "trainval": stems}
    for name, members in splits.items():
        text = "".join(f"{stem}\n" for stem in members)
        (root / "ImageSets/Segmentation" / f"{name}.txt").write_text(text, encoding="utf-8")


def full_decode_loop(root: Path) -> int:
    """Decode every image and mask completely, one process: the naive baseline."""
    count = 0
    for path in sorted((root / "JPEGImages").glob("*.jpg")):
        with PIL.Image.open(path) as image:
            np.asarray(image.convert("RGB"))
        for folder in ("SegmentationClass", "SegmentationObject"):
            with PIL.Image.open(root / folder / f"{path.stem}.png") as mask:
                np.asarray(mask)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of every image")
    parser.add_argument("--workdir", type=Path, default=Path("bench_data/validate"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    root = args.workdir / f"voc_{args.images}_{width}x{height}"
    if not (root / "class_names.txt").is_file():
        print(f"generating {args.images} images of {width}x{height} in {root} …")
        make_dataset(root, args.images, (width, height))
    dataset = open_dataset(root)
    full_decode_loop(root)  # warm the page cache

    rows = [
        (
            "segkit validate, 1 worker",
            _timed(lambda: _clean(validate(dataset, workers=1).findings)),
        ),
        (
            f"segkit validate, all cores ({default_workers()})",
            _timed(lambda: _clean(validate(dataset).findings)),
        ),
        ("full decode of images + masks, 1 process", _timed(lambda: full_decode_loop(root))),
    ]
    images = len(dataset.samples)
    print(f"{images} images of {width}x{height}, JPEG + 2 palette PNG masks each")
    print(f"  {'':<45} {'wall s':>7}  {'images/s':>8}  {'CPU s':>7}")
    for label, (wall, cpu) in rows:
        print(f"  {label:<45} {wall:7.2f}  {images / wall:8.0f}  {cpu:7.2f}")


def _clean(findings: list) -> None:
    if findings:
        raise SystemExit(f"expected a clean dataset, got {len(findings)} findings")


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``work()``."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    work()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


if __name__ == "__main__":
    main()
