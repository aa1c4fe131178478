"""Regenerate ``sample_data/`` with :func:`segkit.sample_data.write_sample_data`.

Run: ``python scripts/make_sample_data.py [OUT_DIR] [--scenes N]`` (default:
sample_data, no extra scenes: the six edge-case annotations the tests use).
``--scenes 42`` writes the 48-image set ``segkit demo`` trains on.
"""

from __future__ import annotations

import argparse

from segkit.sample_data import write_sample_data

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="sample_data")
    parser.add_argument("--scenes", type=int, default=0, help="training scenes to add")
    args = parser.parse_args()
    write_sample_data(args.out, scenes=args.scenes)
