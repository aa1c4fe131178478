"""segkit's masks against committed labelme 7.1 goldens (no labelme needed).

Each ``tests/data/parity/<case>.json`` has a ``<case>.npz`` with labelme's raw
``shapes_to_label`` output; tests/data/parity/README.md says how they were made.
The raw output is post-processed the way segkit documents it (ignore → 255; instance
0 on background, ignore value on ignore; uint16 with 65535 past 254 instances).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from segkit.labelme import SHAPE_TYPES, read_annotation
from segkit.rasterize import rasterize

PARITY_DIR = Path(__file__).parent / "data" / "parity"
CASES = sorted(PARITY_DIR.glob("*.json"))


def label_ids() -> dict[str, int]:
    """segkit ids for labels.txt: ``__ignore__`` → 255, then 0, 1, 2, … in file order."""
    names = [line.strip() for line in (PARITY_DIR / "labels.txt").read_text().splitlines()]
    assert names[0] == "__ignore__" and names[1] == "_background_"
    return {name: (255 if i == 0 else i - 1) for i, name in enumerate(names) if name}


def instance_total(shapes: list[dict]) -> int:
    """Distinct (label, group_id) pairs; a shape without group_id is one of its own."""
    grouped = {(s["label"], s["group_id"]) for s in shapes if s.get("group_id") is not None}
    return len(grouped) + sum(1 for s in shapes if s.get("group_id") is None)


def expected(golden: np.lib.npyio.NpzFile, instances: int) -> tuple[NDArray, NDArray]:
    """labelme's raw arrays → segkit's documented class and instance masks."""
    cls, ins = golden["class"], golden["instance"]
    ignore = cls == -1
    wide = instances > 254
    instance_mask = ins.astype(np.uint16 if wide else np.uint8)
    instance_mask[cls == 0] = 0
    instance_mask[ignore] = 65535 if wide else 255
    return np.where(ignore, 255, cls).astype(np.uint8), instance_mask


def test_golden_set_is_complete() -> None:
    # Every JSON has its golden and the set exercises every behaviour it is there for.
    assert len(CASES) >= 5
    assert {p.stem for p in PARITY_DIR.glob("*.npz")} == {p.stem for p in CASES}
    shapes = [s for path in CASES for s in json.loads(path.read_text())["shapes"]]
    assert {s["shape_type"] for s in shapes} == set(SHAPE_TYPES)
    assert any(s["shape_type"] == "linestrip" and len(s["points"]) >= 3 for s in shapes)
    masks = [np.array(s["points"]) for s in shapes if s["shape_type"] == "mask"]
    assert any((m != np.trunc(m)).any() for m in masks), "a fractional-corner mask"
    assert any((m < 0).any() for m in masks), "a mask partly outside"
    assert any(s["group_id"] is not None for s in shapes)
    assert {"__ignore__", "_background_"} <= {s["label"] for s in shapes}
    documents = [json.loads(p.read_text()) for p in CASES]
    assert any(instance_total(d["shapes"]) > 254 for d in documents)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_labelme_golden(path: Path) -> None:
    golden = np.load(path.with_suffix(".npz"))
    assert str(golden["json_sha256"]) == hashlib.sha256(path.read_bytes()).hexdigest(), (
        f"{path.name} changed since its golden was made: regenerate it (see README.md)"
    )
    assert str(golden["labelme_version"]).startswith("7.")
    annotation = read_annotation(path)
    size = (annotation.image_height, annotation.image_width)
    assert golden["class"].shape == size
    instances = instance_total(json.loads(path.read_text())["shapes"])
    want_class, want_instance = expected(golden, instances)

    got = rasterize(annotation.shapes, size, label_ids())

    np.testing.assert_array_equal(got.class_mask, want_class, err_msg="class mask")
    np.testing.assert_array_equal(got.instance_mask, want_instance, err_msg="instance mask")
    assert got.instance_mask.dtype == want_instance.dtype
    assert got.instance_count == instances
