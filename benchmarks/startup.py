"""Start-up time of the ``segkit`` command: ``--version``, ``--help`` and each ``CMD --help``.

Runs every command as a fresh process (what a user waits for), interleaved, ``--repeat``
times, next to a bare interpreter (``python -c pass``) and ``import typer`` (the floor
a typer command line cannot go below), and prints the median wall seconds of each
against the 0.25 s target, and the median CPU seconds (user + system), which the
other jobs of a loaded machine inflate less; the load average is printed too.
``--baseline SRC`` times the same segkit commands from another source tree (e.g. an
earlier commit unpacked with ``git archive``) interleaved with these, for a ratio.
Then lists the heaviest imports of ``segkit convert --help``
(``python -X importtime``). Run:

    python benchmarks/startup.py [--repeat 7] [--baseline /tmp/segkit-before/src]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

TARGET_S = 0.25
#: What the ``segkit`` executable runs (a baseline tree from before it existed: ``main``).
SEGKIT = [
    sys.executable,
    "-c",
    "from segkit import cli; getattr(cli, 'entry_point', cli.main)()",
]
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], source: str | None) -> tuple[float, float]:
    """(wall, CPU) seconds of ``command``, with segkit imported from ``source`` if given."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = source
    cpu, start = _cpu(), time.perf_counter()
    subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env
    )
    return time.perf_counter() - start, _cpu() - cpu


def _heaviest_imports(count: int) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest top-level imports of ``segkit convert -h``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *SEGKIT[1:], "convert", "--help"],
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
    parser.add_argument("--baseline", help="another segkit source tree (its src/) to compare")
    args = parser.parse_args()
    runs = [(name, command, None) for name, command in COMMANDS.items()]
    if args.baseline:
        runs += [
            (f"{name} (baseline)", command, args.baseline)
            for name, command in COMMANDS.items()
            if name.startswith("segkit")
        ]
    walls: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    load = os.getloadavg()
    for _ in range(args.repeat):
        for name, command, source in runs:
            wall, cpu = _timed(command, source)
            walls[name].append(wall)
            cpus[name].append(cpu)
    loads = " ".join(f"{v:.2f}" for v in (*load, *os.getloadavg()))
    print(f"load average before and after: {loads}; {os.cpu_count()} cores")
    print(f"{'command':<40}{'wall s':>8}{'CPU s':>8}  (medians; target {TARGET_S} s)")
    for name in walls:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        line = f"{name:<40}{wall:>8.3f}{cpu:>8.3f}"
        baseline = f"{name} (baseline)"
        if baseline in walls:
            ratio = statistics.median(walls[baseline]) / wall
            line += f"  {ratio:.1f}x faster than baseline"
        print(line)
    print("heaviest imports of `segkit convert --help` (cumulative ms):")
    for micros, name in _heaviest_imports(8):
        print(f"  {micros / 1000:7.1f}  {name}")


if __name__ == "__main__":
    main()
