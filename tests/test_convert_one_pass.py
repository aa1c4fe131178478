"""``--labels`` into a folder segkit has not written: one pass over the files, same result.

The label scan of two passes decides, before any mask is written, whether a label is
unknown. One pass finds that out while converting, and then removes what it wrote:
these tests hold both paths to the same outputs, manifest and errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_convert import add_sample, shape, tree_hashes

from segkit.convert_stage import convert
from segkit.errors import AnnotationError

LABELS = "cat,dog,zeta"  # sorted: the ids discovered labels would get


def _corpus(folder: Path, files: int = 12, unknown: tuple[int, ...] = ()) -> None:
    for index in range(files):
        label = ("cat", "dog", "zeta", "kitty")[index % 4]
        shapes = [
            shape(label, "polygon", [[1, 1], [20 + index % 5, 2], [12, 18]]),
            shape("dog", "circle", [[15, 10], [19, 12 + index % 3]], group_id=index % 2),
        ]
        if index in unknown:
            shapes.append(shape("wolf", "point", [[4, 4]]))
        add_sample(folder / f"part{index % 2}", f"f{index:02d}", shapes)


def _samples(output: Path) -> list[dict]:
    return json.loads((output / "segkit.json").read_text())["samples"]


@pytest.mark.parametrize("workers", [1, 2])
def test_one_pass_writes_what_two_passes_write(tmp_path: Path, workers: int) -> None:
    _corpus(tmp_path / "in")
    common = {"label_map": {"kitty": "cat"}, "workers": workers}
    two = convert(tmp_path / "in", tmp_path / "two", **common)  # discovered: two passes
    one = convert(tmp_path / "in", tmp_path / "one", labels=LABELS, **common)
    assert one.classes == two.classes and one.converted == two.converted == 12
    assert (one.class_pixels, one.shape_types) == (two.class_pixels, two.shape_types)
    one_tree, two_tree = (tree_hashes(tmp_path / name) for name in ("one", "two"))
    del one_tree["segkit.json"], two_tree["segkit.json"]
    assert one_tree == two_tree
    # Every sample field, the options fingerprint each worker computed included.
    assert _samples(tmp_path / "one") == _samples(tmp_path / "two")


def test_a_rerun_after_one_pass_finds_everything_up_to_date(tmp_path: Path) -> None:
    _corpus(tmp_path / "in")
    first = convert(tmp_path / "in", tmp_path / "out", labels=LABELS, label_map={"kitty": "cat"})
    assert first.converted == 12
    again = convert(tmp_path / "in", tmp_path / "out", labels=LABELS, label_map={"kitty": "cat"})
    assert (again.converted, again.up_to_date) == (0, 12)
    # A label appended to the list changes no file's own ids: still nothing to redo.
    longer = convert(
        tmp_path / "in", tmp_path / "out", labels=f"{LABELS},zebra", label_map={"kitty": "cat"}
    )
    assert (longer.converted, longer.up_to_date) == (0, 12)


def _unknown_error(tmp_path: Path, output: Path, workers: int, **extra) -> str:
    with pytest.raises(AnnotationError) as caught:
        convert(tmp_path / "in", output, labels=LABELS + ",kitty", workers=workers, **extra)
    return str(caught.value)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_unknown_label_found_late_leaves_no_output(tmp_path: Path, workers: int) -> None:
    _corpus(tmp_path / "in", unknown=(9, 11))  # written after most other files
    message = _unknown_error(tmp_path, tmp_path / "out", workers)
    # Every file with the label is named, those the run never reached too.
    assert "'wolf' (part1/f09.json, part1/f11.json)" in message
    assert "--unknown-label" in message
    assert not (tmp_path / "out").exists()


def test_an_unknown_label_leaves_an_existing_folder_as_it_was(tmp_path: Path) -> None:
    _corpus(tmp_path / "in", unknown=(10,))
    out = tmp_path / "out"
    (out / "SegmentationClass").mkdir(parents=True)
    (out / "SegmentationClass/f03.png").write_bytes(b"someone else's")  # an output name
    (out / "notes.txt").write_text("mine")
    before = tree_hashes(out)
    _unknown_error(tmp_path, out, 2, force=True)
    assert tree_hashes(out) == before
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "SegmentationClass",
        "SegmentationClass/f03.png",
        "notes.txt",
    ]


def test_an_unknown_label_in_a_file_that_fails_to_parse_still_stops_the_run(
    tmp_path: Path,
) -> None:
    _corpus(tmp_path / "in", files=6)
    broken = [shape("wolf", "polygon", [[1, 1], [2, 2]])]  # too few points for a polygon
    add_sample(tmp_path / "in", "z_broken", broken)
    message = _unknown_error(tmp_path, tmp_path / "out", 2)
    assert "'wolf' (z_broken.json)" in message
    assert not (tmp_path / "out").exists()
