"""Time `segkit predict` inference on CPU: whole image vs tiled, against a plain forward pass.

For the default U-Net (``unet``: width 64, depth 4, random weights — speed does not
depend on the values) on ``--images`` random RGB images of ``--size`` pixels:

1. reference: ``softmax(model(x)).argmax`` on the whole image, nothing else;
2. ``segkit.inference.predict_probabilities`` on the whole image (+ argmax);
3. the same with ``--tile`` tiles overlapping by ``--overlap`` pixels, Gaussian-blended;
4. the whole ``segkit.predict`` stage on image files (decode, masks, overlays, record),
   whole and tiled.

Prints seconds, images/s and megapixels/s per row and the ratio to the reference.

Then peak memory: in fresh processes, the growth of the peak resident set (VmHWM, reset
to the current RSS just before; ru_maxrss where that is not Linux) while predicting one ``--memory-size``² image with tiles of ``--memory-tile`` (64 px
overlap) and ``--memory-model`` at width ``--memory-width`` (small, so the run stays
short: the image-sized buffers do not depend on the model, the tile's activations do):

- ``stream``: ``segkit.inference.predict_mask`` from decoded uint8 pixels (what
  ``segkit predict`` does): the pixels, the uint8 mask and a band of tile rows;
- ``tensor``: the float32 image tensor and ``predict_probabilities``'s ``K × H × W``
  result, argmax'd (the API train's validation and ``report`` use on small images);
- ``stage``: the whole ``segkit.predict`` call on a PNG file (decode, mask, overlay).

The decoded pixels exist before the ``stream``/``tensor`` baselines; the stage's growth
includes decoding and loading the model. ``--compare-src OLD/src`` runs the same probes
against another checkout's sources too (e.g. the commit before the memory bound).
Run:

    python benchmarks/predict.py [--images 2] [--size 512] [--tile 256] [--overlap 32]
        [--memory-size 6000] [--memory-tile 512] [--memory-model unet-tiny]
        [--memory-width 4] [--memory-depth 2] [--memory-whole] [--memory-only]
        [--memory-modes stream,tensor,stage] [--compare-src DIR]
"""

from __future__ import annotations

import argparse
import os
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
import resource, sys
from pathlib import Path
import numpy as np, PIL.Image
from segkit import inference
from segkit.checkpoint import load_checkpoint
mode, checkpoint, image, tile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
tile = None if tile == "whole" else int(tile)
options = inference.InferenceOptions(tile=tile, overlap=0.0 if tile is None else 64 / tile)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
def mark():
    # Linux: reset the peak to the current resident set, so earlier transients (the
    # decoding) do not hide the growth; elsewhere the peak so far.
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return status("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def peak():
    try:
        return status("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if mode == "stage":
    from segkit.predict.stage import PredictOptions, predict
    settings = PredictOptions(run=Path(checkpoint), tile=tile, precision="fp32")
    before = mark()
    predict([Path(image)], Path(sys.argv[5]), settings)
else:
    loaded = load_checkpoint(checkpoint)
    normalization = loaded.meta.normalization
    with PIL.Image.open(image) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    before = mark()
    if mode == "tensor":
        tensor = inference.image_to_tensor(pixels, normalization)
        inference.predict_probabilities(loaded.model, tensor, options).argmax(0)
    elif hasattr(inference, "predict_stripes"):
        inference.predict_mask(loaded.model, pixels, options, normalization=normalization)
    else:  # sources from before striped inference
        print("nan")
        raise SystemExit
print(peak() - before)
"""

MEMORY_MODES = ("stream", "tensor", "stage")


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
    parser.add_argument("--memory-width", type=int, default=4, help="the model's base channels")
    parser.add_argument("--memory-depth", type=int, default=2, help="the model's depth")
    parser.add_argument(
        "--memory-whole", action="store_true", help="also the whole image (slow, large)"
    )
    parser.add_argument("--memory-only", action="store_true", help="skip the timing rows")
    parser.add_argument(
        "--memory-modes", default=",".join(MEMORY_MODES), help="probes to run (comma-separated)"
    )
    parser.add_argument("--compare-src", help="also probe memory with these sources (a src/)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.memory_only:
        with tempfile.TemporaryDirectory() as tmp:
            memory(args, Path(tmp))
        return
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
        memory(args, root)


def smooth_picture(size: int, seed: int = 0) -> PIL.Image.Image:
    """A ``size``² RGB picture of smooth colour fields (compresses as photos do)."""
    rng = np.random.default_rng(seed)
    small = PIL.Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    return small.resize((size, size), PIL.Image.Resampling.BILINEAR)


def memory(args: argparse.Namespace, root: Path) -> None:
    """Peak RSS growth of each probe in a fresh process, this checkout and ``--compare-src``."""
    model = build_model(
        args.memory_model, 3, 4, base_channels=args.memory_width, depth=args.memory_depth
    )
    normalization = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    save_checkpoint(root / "mem" / "best", model, classes=list("abcd"), normalization=normalization)
    checkpoint = str(root / "mem" / "best.safetensors")
    image = root / f"big{args.memory_size}.png"
    smooth_picture(args.memory_size).save(image)
    pixels = args.memory_size**2
    print(
        f"\npeak RSS growth, {args.memory_model} (width {args.memory_width}, depth "
        f"{args.memory_depth}), one "
        f"{args.memory_size}² image, 4 classes, {torch.get_num_threads()} threads:"
    )
    sources = [("this checkout", None)]
    if args.compare_src:
        sources.append((f"{args.compare_src}", args.compare_src))
    tiles = [str(args.memory_tile)] + (["whole"] if args.memory_whole else [])
    for number, (label, src) in enumerate(sources):
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = str(Path(src).resolve())
        for tile in tiles:
            for mode in args.memory_modes.split(","):
                start = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-c", MEMORY_PROBE, mode, checkpoint, str(image), tile,
                     str(root / f"out{number}-{mode}-{tile}")],
                    capture_output=True, text=True, check=True, env=env,
                )  # fmt: skip
                peak = float(out.stdout.split()[-1])
                if peak != peak:  # nan: the mode does not exist in those sources
                    continue
                print(
                    f"  {label:<20} {mode:>6} tile {tile:>5}: {peak:8.0f} MiB "
                    f"({peak * 2**20 / pixels:5.1f} bytes/pixel), "
                    f"{time.perf_counter() - start:.0f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
