"""A tiny generated VOC dataset for training tests: bright squares and dark discs on noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

from segkit.voc import encode_palette_png

CLASSES = ("_background_", "square", "disc")


def scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A grayscale-ish RGB image and its class mask: class 1 brighter, class 2 darker."""
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(2):
        side = int(rng.integers(size // 5, size // 3))
        y, x = rng.integers(0, size - side, 2)
        mask[y : y + side, x : x + side] = 1
        cy, cx = rng.integers(side // 2, size - side // 2, 2)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= (side // 2) ** 2] = 2
    image = rng.normal(120, 12, (size, size, 3))
    image[mask == 1] += 80
    image[mask == 2] -= 80
    return np.clip(image, 0, 255).astype(np.uint8), mask


def make_voc(
    root: Path, *, n_train: int = 8, n_val: int = 4, size: int = 32, seed: int = 0
) -> Path:
    """Write JPEGImages (PNG), SegmentationClass, class_names.txt and train/val splits."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = [f"img{i:03d}" for i in range(n_train + n_val)]
    for sample_id in ids:
        image, mask = scene(rng, size)
        PIL.Image.fromarray(image).save(root / "JPEGImages" / f"{sample_id}.png")
        (root / "SegmentationClass" / f"{sample_id}.png").write_bytes(encode_palette_png(mask))
    (root / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    splits = root / "ImageSets" / "Segmentation"
    (splits / "train.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (splits / "val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return root
