"""Time `segkit convert` against labelme's reference labelme2voc pipeline on the same data.

Builds a generated data set (default 200 JPEG images of 1024×768, ~40 polygons each,
images on disk next to their JSON), then in one run:

1. labelme's reference, as its ``labelme2voc.py`` example does per file, in one process:
   load the label file (which reads the image), decode it to RGB, save it as JPEG,
   ``shapes_to_label``, save class and object masks as palette PNGs (``imgviz.io.lblsave``);
2. ``segkit convert`` (Python API, default workers = all cores, process start-up included);

checks that every class and object mask is identical, and prints images/s for both and
the ratio (best of ``--repeat`` runs each, since other load on a shared machine only
ever adds time; all runs are printed too). Needs the ``dev`` extra (labelme). Run:

    python benchmarks/convert.py [--images 200] [--polygons 40] [--repeat 3] [--workdir DIR]

``--dense`` generates annotations closer to what people draw around real objects:
polygons of 8–60 vertices with radii of 15–160 px on noise-textured JPEGs.
``--whole-process`` times both sides as a user meets them, as subprocesses with their
imports: ``segkit convert`` against ``benchmarks/labelme2voc_reference.py`` (labelme's
``labelme2voc.py`` example with ``--noobject --nonpy --noviz``: class masks only),
interleaved, and compares the class masks. ``--steps`` prints what each step of one
file's conversion costs in a worker, in ms per file. ``--baseline SRC`` also times ``segkit
convert`` from another source tree (e.g. ``git archive COMMIT src | tar -x -C /tmp/b``,
then ``--baseline /tmp/b/src``) in the same rounds.

    python benchmarks/convert.py --dense --whole-process --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CLASSES = ["_background_", "road", "car", "person", "tree", "sign"]


#: (vertices, radius in px) ranges of the generated polygons: light and --dense.
LIGHT = ((6, 15), (20, 120))
DENSE = ((8, 60), (15, 160))


def _polygon(
    rng: np.random.Generator, width: int, height: int, shape: tuple = LIGHT
) -> list[list[float]]:
    (fewest, most), (smallest, largest) = shape
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    n = int(rng.integers(fewest, most + 1))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(smallest, largest) * rng.uniform(0.6, 1.0, n)
    return [
        [round(float(cx + r * np.cos(a)), 2), round(float(cy + r * np.sin(a)), 2)]
        for a, r in zip(angles, radii, strict=True)
    ]


def make_dataset(
    folder: Path, images: int, polygons: int, size: tuple[int, int], *, dense: bool = False
) -> None:
    """Write ``images`` JPEG + labelme JSON pairs into ``folder`` (deterministic).

    ``dense``: many-vertex polygons (``DENSE``) on an image with per-pixel noise, which
    encodes to a JPEG of realistic size (a smooth gradient compresses to almost nothing).
    """
    rng = np.random.default_rng(0)
    width, height = size
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    for index in range(images):
        stem = f"img_{index:04d}"
        base = np.stack(
            [(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 40 + index % 100)], -1
        ).astype(np.uint8)
        if dense:
            noise = rng.integers(-40, 41, base.shape, dtype=np.int16)
            base = np.clip(base + noise, 0, 255).astype(np.uint8)
        image = PIL.Image.fromarray(base)
        draw = PIL.ImageDraw.Draw(image)
        shapes = []
        for _ in range(polygons):
            points = _polygon(rng, width, height, DENSE if dense else LIGHT)
            label = CLASSES[int(rng.integers(1, len(CLASSES)))]
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            draw.polygon([tuple(p) for p in points], fill=colour)
            shapes.append(
                {
                    "label": label,
                    "points": points,
                    "group_id": None,
                    "description": "",
                    "shape_type": "polygon",
                    "flags": {},
                }
            )
        image.save(folder / f"{stem}.jpg", quality=90)
        annotation = {
            "version": "5.5.0",
            "flags": {},
            "shapes": shapes,
            "imagePath": f"{stem}.jpg",
            "imageData": None,
            "imageHeight": height,
            "imageWidth": width,
        }
        (folder / f"{stem}.json").write_text(json.dumps(annotation), encoding="utf-8")
    (folder / "labels.txt").write_text("\n".join(["__ignore__", *CLASSES]) + "\n")


def run_labelme_reference(src: Path, out: Path) -> float:
    """labelme2voc's per-file work, single process; returns seconds."""
    import imgviz
    import labelme
    from labelme import utils
    from loguru import logger

    # labelme logs a DEBUG line per image read; silenced so the reference pays nothing
    # for terminal output.
    logger.disable("labelme")

    label_ids = {"__ignore__": -1, **{name: i for i, name in enumerate(CLASSES)}}
    for name in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (out / name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in sorted(src.glob("*.json")):
        label_file = labelme.LabelFile(filename=str(path))
        image = utils.img_data_to_arr(label_file.image_data)
        imgviz.io.imsave(out / "JPEGImages" / f"{path.stem}.jpg", image)
        cls, ins = utils.shapes_to_label(image.shape, label_file.shapes, label_ids)
        ins[cls == -1] = 0
        imgviz.io.lblsave(out / "SegmentationClass" / f"{path.stem}.png", cls.astype(np.uint8))
        imgviz.io.lblsave(out / "SegmentationObject" / f"{path.stem}.png", ins.astype(np.uint8))
    return time.perf_counter() - start


def run_segkit(src: Path, out: Path, workers: int | None) -> float:
    """``segkit convert`` through its Python API; returns seconds."""
    from segkit.convert_stage import convert

    start = time.perf_counter()
    summary = convert(src, out, labels=str(src / "labels.txt"), workers=workers, force=True)
    elapsed = time.perf_counter() - start
    if summary.failures:
        raise SystemExit(f"segkit failed: {summary.failures[:3]}")
    return elapsed


_MASK_FOLDERS = ("SegmentationClass", "SegmentationObject")
REFERENCE_SCRIPT = Path(__file__).with_name("labelme2voc_reference.py")


#: CPU seconds (user + system) of each subprocess timed, by command: on a loaded shared
#: machine they move less than wall time, so they are printed too.
CPU_SECONDS: dict[str, list[float]] = {"labelme": [], "segkit": [], "baseline": []}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: The environment of the timed subprocesses (see ``_bytecode_cache``); None: inherited.
_SUBPROCESS_ENV: dict[str, str] | None = None


def _bytecode_cache(workdir: Path) -> dict[str, str]:
    """An environment in which both sides run from compiled bytecode, as installed.

    ``pip install`` compiles every module, and Python caches what it compiles; where
    ``PYTHONDONTWRITEBYTECODE`` is set (as on the machine these numbers come from), a
    source checkout is compiled again in every process: ~0.08 s of each ``segkit
    convert`` run, none of labelme's (its wheel's bytecode is installed). So both sides
    write and read bytecode under ``WORKDIR/pycache``, and one untimed warm-up run of
    each fills it before timing.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str((workdir / "pycache").resolve())
    return env


def _timed(command: list[str], name: str | None, env: dict[str, str] | None = None) -> float:
    """Run ``command`` (its output discarded, a failure fatal); returns seconds.

    ``name`` is the side whose CPU seconds it adds to; ``None`` records nothing (warm-up).
    """
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _SUBPROCESS_ENV,
    )
    elapsed = time.perf_counter() - start
    if name is not None:
        CPU_SECONDS[name].append(_children_cpu() - cpu)
    if done.returncode:
        raise SystemExit(f"{command[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def run_labelme_script(src: Path, out: Path, *, warm_up: bool = False) -> float:
    """labelme2voc (class masks only) as a script in a fresh interpreter; returns seconds."""
    labels = str(src / "labels.txt")
    command = [sys.executable, str(REFERENCE_SCRIPT), str(src), str(out), "--labels", labels]
    return _timed(command, None if warm_up else "labelme")


def run_segkit_command(
    src: Path, out: Path, workers: int | None, tree: str | None = None, *, warm_up: bool = False
) -> float:
    """``segkit convert`` as a command in a fresh interpreter; returns seconds.

    ``tree``: another segkit source folder (its ``src/``) to run instead, the baseline.
    """
    command = [sys.executable, "-m", "segkit", "convert", str(src), "-o", str(out)]
    command += ["--labels", str(src / "labels.txt")]
    if workers is not None:
        command += ["--workers", str(workers)]
    env = None if tree is None else {**(_SUBPROCESS_ENV or os.environ), "PYTHONPATH": tree}
    return _timed(command, None if warm_up else "baseline" if tree else "segkit", env)


def compare(reference: Path, ours: Path, folders: tuple[str, ...] = _MASK_FOLDERS) -> int:
    """Number of images whose class or object masks differ."""
    differing = 0
    for path in sorted((reference / "SegmentationClass").glob("*.png")):
        for folder in folders:
            a = np.asarray(PIL.Image.open(reference / folder / path.name))
            b = np.asarray(PIL.Image.open(ours / folder / path.name))
            if folder == "SegmentationObject":
                # labelme2voc writes 0 on ignore pixels, segkit 255 (VOC's void); none here.
                b = np.where(b == 255, 0, b)
            if not np.array_equal(a, b):
                differing += 1
                break
    return differing


_OUTPUT_PREFIX = "out_"


def _clear_earlier_outputs(workdir: Path) -> None:
    """Delete the outputs an earlier invocation left, then let the file system settle.

    On ext4 without a journal (as on the machine these numbers come from) every new
    file's inode search skips, one by one, the inodes freed in the last
    ``vm.dirty_expire_centisecs`` (30 s), and workers creating files in one folder
    spin on its lock meanwhile: right after deleting a previous run's 1,200 files,
    creating files took most of segkit's time (perf: 35 % of all CPU in
    ``recently_deleted``). That measures the harness's own deletes, for both
    pipelines, not conversion; so earlier outputs are deleted before, and timing
    starts after that window.
    """
    earlier = sorted(workdir.glob(f"{_OUTPUT_PREFIX}*"))
    for folder in earlier:
        shutil.rmtree(folder, ignore_errors=True)
    if earlier:
        _wait_out_recent_deletes(f"deleted {len(earlier)} earlier output folders")


def _wait_out_recent_deletes(what: str) -> None:
    try:
        window = int(Path("/proc/sys/vm/dirty_expire_centisecs").read_text()) / 100
    except (OSError, ValueError):
        window = 30.0
    print(f"{what}; waiting {window + 1:.0f} s before timing")
    time.sleep(window + 1)


def _load() -> str:
    """The 1, 5 and 15 minute load averages (other jobs on a shared machine)."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def time_steps(src: Path, workdir: Path, files: int = 50, repeat: int = 7) -> None:
    """Print what each step of one file's conversion costs in a worker (ms per file).

    The steps ``segkit convert`` runs per file, one at a time over the first ``files``
    files, best of ``repeat`` (prepared as a worker is: malloc tuning, collector paused).
    """
    import gc
    import hashlib

    from segkit import rasterize
    from segkit._io import atomic_write_bytes
    from segkit.convert_one import LabelPolicy, Parsed
    from segkit.labelme import check_extent, load_image, parse_annotation
    from segkit.parallel import prepare_worker_process
    from segkit.png import png_bytes
    from segkit.voc import read_labels

    prepare_worker_process()
    gc.disable()
    paths = sorted(src.glob("*.json"))[:files]
    raws = [path.read_bytes() for path in paths]
    ids = read_labels(src / "labels.txt").to_ids()

    def step(name: str, work: Any) -> list:
        best, out = float("inf"), []
        for _ in range(repeat):
            start = time.perf_counter()
            out = [work(i) for i in range(len(paths))]
            best = min(best, time.perf_counter() - start)
        print(f"{name:<46}{best / len(paths) * 1e3:>8.3f}")
        return out

    print(f"{'step (worker, per file)':<46}{'ms':>8}")
    step("read JSON + SHA-256", lambda i: hashlib.sha256(paths[i].read_bytes()).digest())
    step("json.loads alone", lambda i: json.loads(raws[i]))
    notes = step(
        "parse_annotation (json.loads + checks)", lambda i: parse_annotation(paths[i], raws[i])
    )
    parsed = step("hand-over to the conversion: marshal", lambda i: Parsed.of(notes[i], raws[i]))
    step("hand-over: unmarshal", lambda i: parsed[i].annotation(raws[i], parsed[i].json_sha256))
    images = step("read JPEG", lambda i: notes[i].image_file().read_bytes())
    step("SHA-256 of the JPEG", lambda i: hashlib.sha256(images[i]).digest())
    step(
        "load_image: header only", lambda i: load_image(notes[i], data=images[i], need_pixels=False)
    )
    step("label policy", lambda i: LabelPolicy(ids).apply(notes[i].shapes, ""))
    step("check_extent", lambda i: check_extent(notes[i].shapes, (768, 1024)))
    masks = step(
        "rasterize (draw once, class mask by LUT)",
        lambda i: rasterize.rasterize(notes[i].shapes, (768, 1024), ids),
    )
    pngs = step(
        "2 mask PNGs (zlib-ng, RLE)",
        lambda i: (png_bytes(masks[i].class_image), png_bytes(masks[i].instance_image)),
    )
    out = workdir / f"{_OUTPUT_PREFIX}steps"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names = iter(range(10**9))

    def write(i: int) -> None:
        n = next(names)
        for suffix, data in ((".jpg", images[i]), ("c.png", pngs[i][0]), ("o.png", pngs[i][1])):
            atomic_write_bytes(out / f"{n}{suffix}", data)

    step("3 atomic writes (JPEG copy, 2 PNGs)", write)


def main() -> None:
    """Build the data, time both pipelines, compare, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--polygons", type=int, default=40)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--workers", type=int, default=None, help="segkit workers (default: all)")
    parser.add_argument("--workdir", type=Path, default=None, help="default bench_data/convert*")
    parser.add_argument("--dense", action="store_true", help="8-60 vertices, noisy JPEGs")
    parser.add_argument(
        "--whole-process",
        action="store_true",
        help="time `segkit convert` and the labelme2voc script as subprocesses (class masks)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; best is reported")
    parser.add_argument(
        "--baseline",
        help="with --whole-process: also time `segkit convert` from another source tree "
        "(its src/), interleaved with the others",
    )
    parser.add_argument(
        "--reuse-folders",
        action="store_true",
        help="delete and rewrite the same two output folders before every run (the earlier "
        "protocol: on ext4 without a journal it also times the inode search past the "
        "files just deleted)",
    )
    parser.add_argument(
        "--steps", action="store_true", help="print each per-file step's cost, then stop"
    )
    args = parser.parse_args()
    if args.workdir is None:
        args.workdir = Path("bench_data/convert_dense" if args.dense else "bench_data/convert")

    src = args.workdir / "labelme"
    kind = "dense-" if args.dense else ""
    marker = args.workdir / f"made-{kind}{args.images}-{args.polygons}-{args.width}x{args.height}"
    if not marker.exists():
        rebuilt = args.workdir.exists()
        shutil.rmtree(args.workdir, ignore_errors=True)
        size = (args.width, args.height)
        make_dataset(src, args.images, args.polygons, size, dense=args.dense)
        marker.touch()
        if rebuilt:
            _wait_out_recent_deletes("deleted the earlier data set")
    _clear_earlier_outputs(args.workdir)
    if args.steps:
        time_steps(src, args.workdir)
        return
    if args.whole_process:
        global _SUBPROCESS_ENV
        _SUBPROCESS_ENV = _bytecode_cache(args.workdir)
        run_labelme_script(src, args.workdir / f"{_OUTPUT_PREFIX}warm_up_labelme", warm_up=True)
        trees = [None, args.baseline] if args.baseline else [None]
        for index, tree in enumerate(trees):
            out = args.workdir / f"{_OUTPUT_PREFIX}warm_up_segkit_{index}"
            run_segkit_command(src, out, args.workers, tree, warm_up=True)

    # Best of N for each: on a shared machine other load only ever adds time. Every
    # run writes into a folder of its own, so no run follows a mass delete (see
    # _clear_earlier_outputs).
    ref_times, seg_times, base_times = [], [], []
    for run in range(args.repeat):
        name = "reused" if args.reuse_folders else run
        reference_out = args.workdir / f"{_OUTPUT_PREFIX}labelme_{name}"
        segkit_out = args.workdir / f"{_OUTPUT_PREFIX}segkit_{name}"
        if args.reuse_folders:
            for folder in (reference_out, segkit_out):
                shutil.rmtree(folder, ignore_errors=True)
        if args.whole_process:
            ref_times.append(run_labelme_script(src, reference_out))
            seg_times.append(run_segkit_command(src, segkit_out, args.workers))
            if args.baseline:
                baseline_out = args.workdir / f"{_OUTPUT_PREFIX}baseline_{name}"
                if args.reuse_folders:
                    shutil.rmtree(baseline_out, ignore_errors=True)
                base_times.append(
                    run_segkit_command(src, baseline_out, args.workers, args.baseline)
                )
        else:
            ref_times.append(run_labelme_reference(src, reference_out))
            seg_times.append(run_segkit(src, segkit_out, args.workers))
    t_ref, t_seg = min(ref_times), min(seg_times)
    folders = ("SegmentationClass",) if args.whole_process else _MASK_FOLDERS
    differing = compare(reference_out, segkit_out, folders)
    n = args.images
    vertices = "8-60" if args.dense else "6-15"
    mode = "whole process (subprocesses, imports included)" if args.whole_process else "in-process"
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; load {_load()}")
    print(f"data: {n} images {args.width}x{args.height}, {args.polygons} polygons each")
    print(f"      of {vertices} vertices; timing: {mode}")
    print(f"{'pipeline':<28}{'seconds':>10}{'images/s':>12}")
    print(f"{'labelme2voc reference':<28}{t_ref:>10.2f}{n / t_ref:>12.1f}")
    print(f"{'segkit convert':<28}{t_seg:>10.2f}{n / t_seg:>12.1f}")
    print(f"all runs (s): labelme {_fmt(ref_times)}; segkit {_fmt(seg_times)}")
    median_ratio = statistics.median(ref_times) / statistics.median(seg_times)
    if args.whole_process:
        ref_cpu, seg_cpu = CPU_SECONDS["labelme"], CPU_SECONDS["segkit"]
        cpu_ratio = statistics.median(ref_cpu) / statistics.median(seg_cpu)
        print(f"CPU s (user+sys): labelme {_fmt(ref_cpu)}; segkit {_fmt(seg_cpu)}")
        print(f"CPU median ratio {cpu_ratio:.1f}x")
        if base_times:
            base_cpu = CPU_SECONDS["baseline"]
            print(f"baseline segkit ({args.baseline}): runs (s) {_fmt(base_times)}; CPU s")
            print(
                f"  {_fmt(base_cpu)}; median ratio to labelme "
                f"{statistics.median(ref_times) / statistics.median(base_times):.1f}x "
                f"(this tree: {median_ratio:.1f}x)"
            )
    print(
        f"speed-up: best of {args.repeat} {t_ref / t_seg:.1f}x, median {median_ratio:.1f}x; "
        f"images with differing masks: {differing}"
    )
    if differing:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
