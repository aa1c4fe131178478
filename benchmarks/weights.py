"""Time segkit's U-Net border term against the straightforward formulation.

On generated 512×512 instance maps with 10, 50, 200 and 500 objects (random disks painted
in order, so many touch, some cut by the image border, about 40 % of the pixels covered):

1. **naive**: one full-image Euclidean distance transform per object, then the two
   smallest distances per pixel (kept as a running minimum pair, which is faster and far
   lighter than stacking and sorting all maps as the widely copied version does);
2. **segkit**: ``segkit.weights.border_term`` (one EDT-like separable pass, cut off where
   the term drops below 1e-4), on every pixel like the naive one;
3. **floor**: a single full-image EDT (``scipy.ndimage.distance_transform_edt``) of
   background vs. all objects, the least any exact method must spend.

Prints seconds per image (best of ``--repeat`` runs; the naive one runs once), the
speed-up over naive, segkit's cost in units of the floor, and the largest absolute
difference to naive over all pixels. With ``--stage-images N`` it also times the whole
``segkit weights --border`` stage on N such images (all cores). Run:

    python benchmarks/weights.py [--size 512] [--objects 10 50 200 500] [--repeat 7]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy
from numpy.typing import NDArray
from scipy import ndimage

from segkit.voc import encode_palette_png, encode_uint16_png
from segkit.weights import DEFAULT_SIGMA, DEFAULT_W0, border_term


def instance_map(size: int, objects: int, seed: int) -> NDArray[np.int32]:
    """Random disks covering ~40 % of a size×size image, later ones painted over earlier."""
    rng = np.random.default_rng(seed)
    out = np.zeros((size, size), dtype=np.int32)
    mean_radius = math.sqrt(0.4 * size * size / (math.pi * max(objects, 1)))
    for index in range(1, objects + 1):
        cy, cx = rng.uniform(-4, size + 4, 2)
        radius = mean_radius * rng.uniform(0.6, 1.3)
        y0, y1 = max(0, int(cy - radius) - 1), min(size, int(cy + radius) + 2)
        x0, x1 = max(0, int(cx - radius) - 1), min(size, int(cx + radius) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius
        out[y0:y1, x0:x1][disk] = index
    return out


def naive_border(objects: NDArray[np.integer], w0: float, sigma: float) -> NDArray[np.float64]:
    """One full-image EDT per object; the two smallest distances per pixel."""
    ids = np.unique(objects)
    ids = ids[ids > 0]
    if ids.size < 2:
        return np.zeros(objects.shape)
    d1 = np.full(objects.shape, np.inf)
    d2 = np.full(objects.shape, np.inf)
    for object_id in ids:
        distance = ndimage.distance_transform_edt(objects != object_id)
        np.minimum(d2, np.maximum(d1, distance), out=d2)
        np.minimum(d1, distance, out=d1)
    return w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


def best_of(functions: Sequence[Callable[[], object]], repeat: int) -> list[tuple[float, float]]:
    """(best, median) wall time of each function over ``repeat`` rounds after a warm-up.

    The functions run in turn within each round, so a busy machine slows them alike.
    """
    for function in functions:
        function()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeat):
        for function, spent in zip(functions, times, strict=True):
            start = time.perf_counter()
            function()
            spent.append(time.perf_counter() - start)
    return [(min(spent), statistics.median(spent)) for spent in times]


def time_stage(images: int, size: int, objects: int) -> tuple[float, int]:
    """Seconds for ``segkit weights --border`` on a generated VOC folder, and the workers."""
    from segkit.parallel import default_workers
    from segkit.weights_stage import WeightsOptions, compute_weights

    folder = Path(tempfile.mkdtemp(prefix="segkit-weights-bench-"))
    try:
        for sub in ("SegmentationClass", "SegmentationObject"):
            (folder / sub).mkdir()
        for index in range(images):
            instances = instance_map(size, objects, seed=1000 + index)
            classes = np.where(instances > 0, 1 + instances % 2, 0).astype(np.uint8)
            stem = f"img_{index:04d}"
            (folder / "SegmentationClass" / f"{stem}.png").write_bytes(encode_palette_png(classes))
            encoded = (
                encode_palette_png(instances)
                if instances.max() < 255
                else encode_uint16_png(instances)
            )
            (folder / "SegmentationObject" / f"{stem}.png").write_bytes(encoded)
        (folder / "class_names.txt").write_text("_background_\na\nb\n")
        start = time.perf_counter()
        summary = compute_weights(folder, WeightsOptions(border=True))
        elapsed = time.perf_counter() - start
        if summary.maps_written != images:
            raise RuntimeError(f"expected {images} maps, got {summary.maps_written}")
        return elapsed, default_workers()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--objects", type=int, nargs="+", default=[10, 50, 200, 500])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--w0", type=float, default=DEFAULT_W0)
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA)
    parser.add_argument("--stage-images", type=int, default=0)
    args = parser.parse_args()

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}"
    )
    print(f"# {args.size}x{args.size}, w0={args.w0}, sigma={args.sigma}; seconds per image")
    header = "| objects | naive s | segkit s (median) | speed-up | 1 EDT s | segkit / EDT | max abs err |"
    print(header)
    print("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")
    for count in args.objects:
        objects = instance_map(args.size, count, seed=count)
        present = len(np.unique(objects)) - 1
        start = time.perf_counter()
        reference = naive_border(objects, args.w0, args.sigma)
        naive = time.perf_counter() - start
        (ours, ours_median), (floor, _) = best_of(
            [
                lambda objects=objects: border_term(objects, w0=args.w0, sigma=args.sigma),
                lambda objects=objects: ndimage.distance_transform_edt(objects == 0),
            ],
            args.repeat,
        )
        error = float(np.abs(border_term(objects, w0=args.w0, sigma=args.sigma) - reference).max())
        print(
            f"| {count} ({present} visible) | {naive:.3f} | {ours:.4f} ({ours_median:.4f}) "
            f"| {naive / ours:.0f}× | {floor:.4f} | {ours / floor:.2f}× | {error:.2e} |",
            flush=True,
        )
    if args.stage_images:
        elapsed, workers = time_stage(args.stage_images, args.size, 200)
        print(
            f"\n`segkit weights --border` on {args.stage_images} images of {args.size}x{args.size} "
            f"with 200 objects, {workers} workers: {elapsed:.2f} s "
            f"({args.stage_images / elapsed:.1f} images/s, reading and writing included)"
        )


if __name__ == "__main__":
    main()
