"""Regenerate the parity goldens with an *installed* labelme >= 7.1 (run by hand, not by pytest).

    QT_QPA_PLATFORM=offscreen python tests/data/parity/regenerate.py

For every ``*.json`` beside this file, writes ``<stem>.npz`` holding labelme's raw
``shapes_to_label`` output (``class``, ``instance``: int32, ignore = -1 as labelme's
example converter numbers labels.txt) plus the JSON's SHA-256 and the labelme version.
Mask bitmaps are decoded with labelme's own ``img_b64_to_arr``, as its LabelFile does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

HERE = Path(__file__).resolve().parent
MINIMUM = (7, 1)


def labelme_values() -> dict[str, int]:
    """labels.txt line i → value i - 1 (``__ignore__`` first → -1), as labelme2voc does."""
    names = [line.strip() for line in (HERE / "labels.txt").read_text().splitlines()]
    return {name: i - 1 for i, name in enumerate(name for name in names if name)}


def main() -> int:
    """Write one .npz per JSON case; refuse a labelme older than 7.1."""
    import labelme

    version = labelme.__version__
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None or tuple(map(int, match.groups())) < MINIMUM:
        print(f"need labelme >= 7.1 (rounded linestrip joints, clipped masks); found {version}")
        return 1
    from labelme._utils import img_b64_to_arr
    from labelme._utils.shape import shapes_to_label

    values = labelme_values()
    for path in sorted(HERE.glob("*.json")):
        raw = path.read_bytes()
        data = json.loads(raw)
        shapes = [
            {
                **item,
                "mask": None
                if item.get("mask") is None
                else img_b64_to_arr(item["mask"]).astype(bool),
                "other_data": {},
            }
            for item in data["shapes"]
        ]
        cls, ins = shapes_to_label((data["imageHeight"], data["imageWidth"]), shapes, values)
        np.savez_compressed(
            path.with_suffix(".npz"),
            **{
                "class": cls.astype(np.int32),
                "instance": ins.astype(np.int32),
                "json_sha256": np.array(hashlib.sha256(raw).hexdigest()),
                "labelme_version": np.array(version),
            },
        )
        print(f"{path.name}: {len(shapes)} shapes → {path.with_suffix('.npz').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
