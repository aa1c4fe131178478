"""Stress: segkit at sizes beyond the tests, with peak memory recorded.

Scenarios (each a real ``segkit`` CLI run in its own child process; its peak resident
memory is the largest process of that command, workers included, from ``os.wait4``):

1. ``convert`` of ``--files`` small labelme files (a 48×40 PNG and 3 polygons each);
2. ``split``, ``weights --border`` and ``report --pred`` (ground truth as the
   predictions) on a dataset of ``--images`` images converted the same way;
3. ``convert`` of ``--classes`` files with one distinct label each: more classes than a
   PNG mask can hold (255 ids), which must fail with one clear line, quickly.

Prints, per command: exit code, wall seconds, per-item milliseconds, peak RSS in MiB,
and the first error line when it failed. Nothing here is asserted (see the tests);
the figures go into docs/benchmarks.md. Run (the machine may be shared: nice):

    nice python benchmarks/stress.py [--files 10000] [--images 2000] [--classes 1000]
        [--workers 2] [--workdir bench_data/stress] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

CLI = [sys.executable, "-m", "segkit"]


def _png(rng: np.random.Generator) -> bytes:
    pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_labelme(folder: Path, count: int, *, distinct_labels: bool = False) -> None:
    """``count`` labelme JSON + PNG pairs; labels ``cat``/``dog``/``ear``, or one each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pictures = [_png(rng) for _ in range(16)]
    for index in range(count):
        name = f"img{index:05d}"
        (folder / f"{name}.png").write_bytes(pictures[index % len(pictures)])
        shapes = []
        for number, label in enumerate(("cat", "dog", "ear")):
            x, y = rng.uniform(2, 30), rng.uniform(2, 24)
            points = [[x, y], [x + 14, y + 2], [x + 8, y + 12 - number]]
            label = f"class{index:04d}" if distinct_labels else label
            shapes.append({"label": label, "points": points, "shape_type": "polygon"})
        doc = {"shapes": shapes, "imagePath": f"{name}.png", "imageData": None}
        doc |= {"imageHeight": 40, "imageWidth": 48}
        (folder / f"{name}.json").write_text(json.dumps(doc))


def measure(args: list[str | Path], items: int) -> dict[str, Any]:
    """Run one segkit command; wall time, peak RSS of its largest process, outcome."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        child = subprocess.Popen([*CLI, *map(str, args)], stdout=null, stderr=subprocess.PIPE)
        assert child.stderr is not None
        # Read stderr in full before waiting: a full pipe would block the child.
        err = child.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    errors = [line for line in err.splitlines() if line.startswith("error")]
    return {
        "command": " ".join(map(str, ["segkit", *args])),
        "exit": child.returncode,
        "seconds": round(seconds, 2),
        "ms_per_item": round(1000 * seconds / max(items, 1), 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "error": errors[0][:200] if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("bench_data/stress"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    workers = ["--workers", str(args.workers)]
    results = []

    started = time.perf_counter()
    write_labelme(work / "many", args.files)
    print(f"wrote {args.files} labelme files in {time.perf_counter() - started:.1f} s", flush=True)
    results.append(
        measure(["convert", work / "many", "-o", work / "many_ds", *workers], args.files)
    )
    shutil.rmtree(work / "many")

    write_labelme(work / "mid", args.images)
    data = work / "mid_ds"
    steps = [
        (["convert", work / "mid", "-o", data, *workers], args.images),
        (["split", data, "--val", "0.2", *workers], args.images),
        (["weights", data, "--border", *workers], args.images),
        (
            [
                "report",
                "--pred",
                data / "SegmentationClass",
                "--gt",
                data,
                "--split",
                "all",
                "-o",
                work / "mid_report",
            ],
            args.images,
        ),
    ]
    for command, items in steps:
        results.append(measure(command, items))

    write_labelme(work / "classes", args.classes, distinct_labels=True)
    results.append(
        measure(["convert", work / "classes", "-o", work / "classes_ds", *workers], args.classes)
    )

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"{'command':<70} {'exit':>4} {'s':>8} {'ms/item':>8} {'peak MiB':>9}")
    for row in results:
        command = row["command"].replace(str(work) + "/", "")
        print(
            f"{command[:70]:<70} {row['exit']:>4} {row['seconds']:>8} "
            f"{row['ms_per_item']:>8} {row['peak_rss_mib']:>9}"
        )
        if row["error"]:
            print(f"    {row['error']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
