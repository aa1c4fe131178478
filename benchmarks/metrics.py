"""Time confusion-matrix accumulation: segkit vs torchmetrics, sklearn and plain np.bincount.

All four count the same generated masks, one image per update as a validation loop or
``segkit report`` does: ``--images`` ground-truth/prediction pairs of ``--size``² pixels,
``--classes`` classes plus ignore (255), uint8 as read from PNG. Ground truth is a
smooth blob map (about 1 % of each image ignored along the top rows); the prediction is
the ground truth shifted by a few pixels with blobs of other classes pasted in, so
errors are contiguous as a model's are. ``--uniform`` draws every pixel independently
instead (no runs: segkit's worst case).

1. **segkit**: ``segkit.metrics.ConfusionMatrix.update``;
2. **torchmetrics**: ``MulticlassConfusionMatrix(ignore_index=255).update`` on tensors
   that share the numpy memory (its documented input: int64 class ids);
3. **sklearn**: ``confusion_matrix`` on the pixels whose ground truth is not ignored;
4. **np.bincount**: the textbook ``bincount(K * gt[valid] + pred[valid])`` with
   ``valid = gt < K``, summed per image;
5. **memory floor**: one read of both arrays (``np.bitwise_or.reduce`` over uint64
   views), which no counting method can beat.

Checks the four matrices are identical, then prints Mpixels/s (best of ``--repeat``
rounds that interleave the methods),
and segkit's speed-up over each. Torch runs on one thread like the rest. Run:

    python benchmarks/metrics.py [--images 100] [--size 512] [--classes 21] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from segkit.metrics import ConfusionMatrix

IGNORE = 255


def blob_map(rng: np.random.Generator, size: int, classes: int) -> np.ndarray:
    """A piecewise-constant class map: argmax of smoothed noise at 1/4 resolution."""
    low = max(size // 4, 1)
    field = ndimage.gaussian_filter(rng.normal(size=(classes, low, low)), (0, 3, 3))
    small = field.argmax(axis=0).astype(np.uint8)
    return np.kron(small, np.ones((4, 4), np.uint8))[:size, :size]


def make_pairs(
    images: int, size: int, classes: int, seed: int = 0, uniform: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(images):
        if uniform:  # independent noise: no runs at all, the worst case for segkit
            gt = rng.integers(0, classes, (size, size), dtype=np.uint8)
            gt[rng.random(gt.shape) < 0.01] = IGNORE
            pairs.append((gt, rng.integers(0, classes, (size, size), dtype=np.uint8)))
            continue
        gt = blob_map(rng, size, classes)
        pred = np.roll(gt, (3, -2), axis=(0, 1))
        paste = blob_map(rng, size, classes)
        pred = np.where(blob_map(rng, size, 4) == 0, paste, pred).astype(np.uint8)
        gt[: max(size // 100, 1)] = IGNORE
        pairs.append((np.ascontiguousarray(gt), np.ascontiguousarray(pred)))
    return pairs


def run_segkit(pairs, k: int) -> np.ndarray:
    cm = ConfusionMatrix(k)
    for gt, pred in pairs:
        cm.update(gt, pred)
    return cm.matrix


def run_torchmetrics(pairs, k: int) -> np.ndarray:
    from torchmetrics.classification import MulticlassConfusionMatrix

    metric = MulticlassConfusionMatrix(k, ignore_index=IGNORE, validate_args=False)
    for gt, pred in pairs:
        metric.update(torch.from_numpy(pred).long(), torch.from_numpy(gt).long())
    return metric.compute().numpy()


def run_sklearn(pairs, k: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    total = np.zeros((k, k), np.int64)
    labels = list(range(k))
    for gt, pred in pairs:
        valid = gt != IGNORE
        total += confusion_matrix(gt[valid], pred[valid], labels=labels)
    return total


def run_bincount(pairs, k: int) -> np.ndarray:
    total = np.zeros(k * k, np.int64)
    for gt, pred in pairs:
        valid = gt < k
        total += np.bincount(k * gt[valid].astype(np.int64) + pred[valid], minlength=k * k)
    return total.reshape(k, k)


def run_floor(pairs, k: int) -> None:
    for gt, pred in pairs:
        np.bitwise_or.reduce(gt.reshape(-1).view(np.uint64))
        np.bitwise_or.reduce(pred.reshape(-1).view(np.uint64))


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sklearn-repeat", type=int, default=1, help="sklearn is slow")
    parser.add_argument(
        "--uniform", action="store_true", help="independent uniform noise instead of masks"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = make_pairs(args.images, args.size, args.classes, uniform=args.uniform)
    k = args.classes
    pixels = args.images * args.size * args.size
    reference = run_bincount(pairs, k)
    for name, fn in (
        ("segkit", run_segkit),
        ("torchmetrics", run_torchmetrics),
        ("sklearn", run_sklearn),
    ):
        if not np.array_equal(fn(pairs, k), reference):
            raise SystemExit(f"{name}'s matrix differs from np.bincount's")
    print(
        f"{args.images} × {args.size}² uint8 masks, {k} classes + ignore, "
        f"{pixels / 1e6:.1f} Mpixels; {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__}"
    )
    methods = (
        ("memory floor", run_floor),
        ("segkit", run_segkit),
        ("np.bincount", run_bincount),
        ("torchmetrics", run_torchmetrics),
        ("sklearn", run_sklearn),
    )
    # Rounds interleave the methods, so a burst of load from elsewhere hits them alike.
    best = dict.fromkeys((name for name, _ in methods), float("inf"))
    for round_index in range(args.repeat):
        for name, fn in methods:
            if name == "sklearn" and round_index >= args.sklearn_repeat:
                continue
            best[name] = min(best[name], best_time(lambda fn=fn: fn(pairs, k), 1))
    rates = {name: pixels / seconds / 1e6 for name, seconds in best.items()}
    print(f"{'method':<14}{'Mpx/s':>10}{'segkit is':>12}")
    for name, rate in rates.items():
        ratio = "" if name == "segkit" else f"{rates['segkit'] / rate:>10.2f}×"
        print(f"{name:<14}{rate:>10.0f}{ratio:>12}")


if __name__ == "__main__":
    main()
