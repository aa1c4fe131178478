"""Time the default ``segkit demo`` and collect its val mIoU and object F1, per seed.

Run: ``python benchmarks/demo.py [--seeds 0 1 2] [--threads 1] [DEMO-OPTIONS...]``.
Each seed runs the real command in a fresh folder; the table shows wall-clock time
(the whole command, Python start-up included) and the numbers the demo printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(seed: int, threads: int | None, extra: list[str]) -> dict:
    """One demo run: wall seconds, mIoU, object F1, stage seconds, epochs trained."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "demo"
        command = [sys.executable, "-m", "segkit", "demo"]
        start = time.perf_counter()
        subprocess.run(
            [*command, "-o", str(out), "--seed", str(seed), "--json", *extra],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        summary = json.loads((out / "demo.json").read_text())
    return {
        "seed": seed,
        "wall_s": wall,
        "mIoU": summary["mIoU"],
        "object_f1": summary["object_f1"],
        "epochs": summary["stages"]["train"]["epochs"],
        "train_s": summary["seconds"]["train"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS")
    args, extra = parser.parse_known_args()
    rows = [run(seed, args.threads, extra) for seed in args.seeds]
    print("| seed | wall s | train s | epochs | val mIoU | object F1 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['wall_s']:.0f} | {r['train_s']:.0f} | {r['epochs']} | "
            f"{r['mIoU']:.3f} | {r['object_f1']:.3f} |"
        )
    if len(rows) > 1:
        mious = [r["mIoU"] for r in rows]
        print(f"mIoU mean {statistics.mean(mious):.3f}, sd {statistics.stdev(mious):.3f}")


if __name__ == "__main__":
    main()
