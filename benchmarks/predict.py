"""Time `segkit predict` inference on CPU: whole image vs tiled, against a plain forward pass.

For the default U-Net (``unet``: width 64, depth 4, random weights — speed does not
depend on the values) on ``--images`` random RGB images of ``--size`` pixels:

1. reference: ``softmax(model(x)).argmax`` on the whole image, nothing else;
2. ``segkit.inference.predict_probabilities`` on the whole image (+ argmax);
3. the same with ``--tile`` tiles overlapping by ``--overlap`` pixels, Gaussian-blended;
4. the whole ``segkit.predict`` stage on image files (decode, masks, overlays, record),
   whole and tiled.

Prints seconds, images/s and megapixels/s per row and the ratio to the reference.
Then, in fresh processes, the peak memory growth (ru_maxrss) of a tiled and a whole
prediction of one ``--memory-size``² image with ``--memory-model`` (a small model, so
the run stays short; the image-sized buffers do not depend on the model). Run:

    python benchmarks/predict.py [--images 2] [--size 512] [--tile 256] [--overlap 32]
        [--memory-size 6000] [--memory-model unet-tiny] [--memory-whole]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from segkit.checkpoint import save_checkpoint
from segkit.inference import InferenceOptions, predict_probabilities
from segkit.models.registry import build_model
from segkit.predict.stage import PredictOptions, predict

MEMORY_PROBE = """
import resource, sys, torch
from segkit.checkpoint import load_checkpoint
from segkit.inference import InferenceOptions, predict_probabilities
model = load_checkpoint(sys.argv[1]).model
size, tile = int(sys.argv[2]), None if sys.argv[3] == "whole" else int(sys.argv[3])
image = torch.rand(3, size, size)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
probs = predict_probabilities(model, image, InferenceOptions(tile=tile, overlap=0.125))
probs.argmax(0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def timed(label: str, images: int, megapixels: float, work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    print(
        f"{label:<40} {seconds:8.2f} s {images / seconds:8.3f} img/s "
        f"{megapixels / seconds:8.3f} Mpx/s",
        flush=True,
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--model", default="unet")
    parser.add_argument("--memory-size", type=int, default=6000)
    parser.add_argument("--memory-model", default="unet-tiny")
    parser.add_argument("--memory-tile", type=int, default=512)
    parser.add_argument(
        "--memory-whole", action="store_true", help="also the whole image (slow, large)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(args.model, 3, 4)
    model.eval()
    rng = np.random.default_rng(0)
    pictures = [
        rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)
    ]
    tensors = [torch.from_numpy(p.transpose(2, 0, 1).copy()).float() / 255 for p in pictures]
    megapixels = args.images * args.size**2 / 1e6
    print(
        f"{args.model}, {args.images} images of {args.size}², {torch.get_num_threads()} threads, "
        f"tile {args.tile} overlap {args.overlap}"
    )

    def reference() -> None:
        with torch.inference_mode():
            for t in tensors:
                torch.softmax(model(t[None]), 1)[0].argmax(0)

    def segkit_run(tile: int | None) -> Callable[[], None]:
        options = InferenceOptions(tile=tile, overlap=0 if tile is None else args.overlap / tile)

        def work() -> None:
            for t in tensors:
                predict_probabilities(model, t, options).argmax(0)

        return work

    predict_probabilities(model, tensors[0][:, :64, :64])  # warm-up
    base = timed("reference: model(x) whole image", args.images, megapixels, reference)
    whole = timed("segkit inference, whole image", args.images, megapixels, segkit_run(None))
    tiled = timed(f"segkit inference, tiles of {args.tile}", args.images, megapixels,
                  segkit_run(args.tile))  # fmt: skip
    print(f"ratio to reference: whole {whole / base:.2f}×, tiled {tiled / base:.2f}× the time")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_checkpoint(root / "run" / "checkpoints" / "best", model, classes=list("abcd"))
        (root / "images").mkdir()
        for index, picture in enumerate(pictures):
            PIL.Image.fromarray(picture).save(root / "images" / f"{index}.png")
        for label, tile in (("whole", None), (f"tiles of {args.tile}", args.tile)):
            options = PredictOptions(
                run=root / "run", tile=tile, overlap=args.overlap, precision="fp32", force=True
            )
            timed(f"segkit predict stage, {label}", args.images, megapixels,
                  lambda o=options: predict(root / "images", root / "out", o))  # fmt: skip

        memory_model = build_model(args.memory_model, 3, 4)
        save_checkpoint(root / "mem" / "best", memory_model, classes=list("abcd"))
        checkpoint = str(root / "mem" / "best.safetensors")
        pixels = args.memory_size**2
        print(
            f"\npeak memory growth, {args.memory_model}, one {args.memory_size}² image "
            f"(float32 image alone: {pixels * 12 / 2**20:.0f} MiB):"
        )
        for tile in [str(args.memory_tile)] + (["whole"] if args.memory_whole else []):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, checkpoint, str(args.memory_size), tile],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            peak = float(out.stdout.split()[-1])
            print(
                f"  {tile:>6}: {peak:8.0f} MiB ({peak * 2**20 / pixels:.1f} bytes/pixel), "
                f"{time.perf_counter() - start:.0f} s"
            )


if __name__ == "__main__":
    main()
