"""Start-up time of the ``segkit`` command: ``--version``, ``--help`` and each ``CMD --help``.

Runs every command as a fresh process (what a user waits for), interleaved, ``--repeat``
times, next to a bare interpreter (``python -c pass``) and ``import typer`` (the floor
a typer command line cannot go below), and prints the median wall seconds of each
against the 0.25 s target; the load average is printed too (a shared machine's other
jobs only add time). Then lists the heaviest imports of ``from segkit.cli import main``
(``python -X importtime``). Run:

    python benchmarks/startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TARGET_S = 0.25
SEGKIT = [sys.executable, "-c", "from segkit.cli import main; main()"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "segkit --version": [*SEGKIT, "--version"],
    "segkit --help": [*SEGKIT, "--help"],
    **{
        f"segkit {name} --help": [*SEGKIT, name, "--help"]
        for name in ("convert", "validate", "split", "weights", "train", "report", "predict")
    },
}


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def _heaviest_imports(count: int) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest top-level imports of the command line."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from segkit.cli import main"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2]
            if len(name) - len(name.lstrip()) <= 3:  # a module the command line imports itself
                rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    """Time each command ``--repeat`` times, interleaved; print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():
            times[name].append(_wall(command))
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} cores")
    print(f"{'command':<28}{'median s':>10}{'min s':>8}  target {TARGET_S} s")
    for name, runs in times.items():
        median = statistics.median(runs)
        verdict = "" if not name.startswith("segkit") else ("ok" if median <= TARGET_S else "SLOW")
        print(f"{name:<28}{median:>10.3f}{min(runs):>8.3f}  {verdict}")
    print("heaviest imports of `from segkit.cli import main` (cumulative ms):")
    for micros, name in _heaviest_imports(8):
        print(f"  {micros / 1000:7.1f}  {name}")


if __name__ == "__main__":
    main()
