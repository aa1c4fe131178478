"""segkit.convert_stage as a Python API, and its helpers (stems, labels, stale-output removal)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers_convert import add_sample, manifest, shape, tree_hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.convert_one import Fingerprints
from segkit.convert_stage import (
    ConvertSummary,
    convert,
    existing_outputs_by_stem,
    find_annotations,
    parse_label_map,
    resolve_labels,
    stems_for,
)
from segkit.errors import AnnotationError, DatasetError, OptionError
from segkit.manifest import new_manifest, save_manifest
from segkit.voc import LabelSet


def test_python_api_returns_a_summary(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a", [shape("kitty", "rectangle", [[1, 1], [4, 4]])])
    add_sample(tmp_path / "in/sub", "b", [shape("dog", "point", [[5, 5]])])
    (tmp_path / "in/bad.json").write_text("{", encoding="utf-8")
    calls: list[tuple[int, int]] = []
    summary = convert(
        str(tmp_path / "in"),
        tmp_path / "out",
        labels=["cat", "dog"],
        label_map={"kitty": "cat"},
        workers=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert isinstance(summary, ConvertSummary)
    assert summary.classes == ("_background_", "cat", "dog")
    assert (summary.images, summary.converted, summary.up_to_date) == (2, 2, 0)
    assert not summary.ok and len(summary.failures) == 1 and "bad.json" in summary.failures[0]
    assert summary.shape_types == {"rectangle": 1, "point": 1}
    assert summary.class_pixels["cat"] == 16
    assert calls[-1] == (3, 3)
    again = convert(
        tmp_path / "in",
        tmp_path / "out",
        labels=LabelSet(summary.classes),
        label_map={"kitty": "cat"},
        workers=1,
    )
    assert (again.converted, again.up_to_date) == (0, 2)


def test_python_api_raises_for_run_wide_problems(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    with pytest.raises(AnnotationError, match=r"'cat' \(a\.json\)"):
        convert(tmp_path / "in", tmp_path / "out", labels="dog")
    with pytest.raises(OptionError, match="--image-format 'gif'"):
        convert(tmp_path / "in", tmp_path / "out", image_format="gif")
    with pytest.raises(OptionError, match="--max-pixels"):
        convert(tmp_path / "in", tmp_path / "out", max_pixels=0)
    assert not (tmp_path / "out").exists()


def test_stems_from_whole_paths() -> None:
    rels = [Path("a/scene.json"), Path("b/scene.json"), Path("scene.json"), Path("x/y/z.json")]
    assert stems_for(rels) == ["a__scene", "b__scene", "scene", "x__y__z"]


def test_colliding_stems_get_path_hashes() -> None:
    stems = stems_for([Path("a/b.json"), Path("a__b.json"), Path("A/B.json")])
    assert all(stem.startswith(("a__b-", "A__B-")) for stem in stems)
    assert len({stem.casefold() for stem in stems}) == 3
    assert stems == stems_for([Path("a/b.json"), Path("a__b.json"), Path("A/B.json")])


def test_previous_ids_are_kept_and_unsafe_ones_ignored() -> None:
    rels = [Path("a/b.json"), Path("a__b.json"), Path("c.json"), Path("d.json")]
    previous = {"a/b.json": "a__b", "c.json": "../escape", "d.json": "x/y"}
    stems = stems_for(rels, previous)
    assert stems[0] == "a__b" and stems[1].startswith("a__b-")
    assert stems[2:] == ["c", "d"]


def test_long_stems_are_cut_to_200_bytes_with_a_path_hash() -> None:
    long_a, long_b = "é" * 150 + "a.json", "é" * 150 + "b.json"  # 302 bytes, same start
    rels = [Path(long_a), Path(long_b), Path("x" * 90, "y" * 90, "z" * 30 + ".json")]
    stems = stems_for(rels)
    assert stems == stems_for(rels)  # derived from the path alone: stable
    assert len(set(stems)) == 3
    for stem, rel in zip(stems, rels, strict=True):
        digest = hashlib.sha256(rel.as_posix().encode()).hexdigest()[:8]
        assert len(stem.encode()) <= 200 and stem.endswith(f"-{digest}")
    assert stems[0].startswith("é" * 95) and stems[2].startswith("x" * 90 + "__")
    assert stems_for([Path("n" * 200 + ".json")]) == ["n" * 200]  # at the limit: as is


def test_previous_ids_with_surrogates_are_not_reused() -> None:
    assert stems_for([Path("a.json")], {"a.json": "a\udce9"}) == ["a"]


def test_find_annotations_skips_folders_holding_a_dataset(tmp_path: Path) -> None:
    relatives = ("a.json", "ds/deep/b.json", "ok/c.json", "segkit.json", "site/segkit.json")
    for relative in relatives:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}", encoding="utf-8")
    save_manifest(tmp_path / "ds", new_manifest(["_background_"], []))
    found = [p.relative_to(tmp_path).as_posix() for p in find_annotations(tmp_path)]
    # The input folder's own segkit.json is only a file: a labelme folder may hold one;
    # and site/segkit.json is no manifest (a labelme file for segkit.jpg, say).
    assert found == ["a.json", "ok/c.json", "segkit.json", "site/segkit.json"]


def test_find_annotations_excludes_what_resolves_into_the_output(tmp_path: Path) -> None:
    """Each file is excluded exactly when ``path.resolve()`` lies in ``exclude``, also
    through a linked file, a linked input folder and a path with ``..`` in it."""
    out, real = tmp_path / "out", tmp_path / "real"
    for relative in ("out/x.json", "real/a.json", "real/sub/b.json", "real/sub/c.json"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}", encoding="utf-8")
    (real / "sub" / "into_out.json").symlink_to(out / "x.json")
    (real / "elsewhere.json").symlink_to(real / "sub" / "b.json")
    (tmp_path / "linked").symlink_to(real)
    for root in (real, tmp_path / "linked", real / "sub" / ".."):
        every = find_annotations(root)
        kept = find_annotations(root, exclude=out.resolve())
        assert kept == [p for p in every if not p.resolve().is_relative_to(out.resolve())]
        assert [p.name for p in every if p not in kept] == ["into_out.json"]


def test_corrupt_manifest_is_replaced_only_with_force(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/segkit.json").write_text("[", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"not valid JSON .*; pass --force to replace"):
        convert(tmp_path / "in", tmp_path / "out", workers=1)
    assert convert(tmp_path / "in", tmp_path / "out", workers=1, force=True).ok
    assert [s["id"] for s in manifest(tmp_path / "out")["samples"]] == ["a"]


_PART = st.sampled_from(["a", "A", "b", "a__b", "x"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(_PART, min_size=1, max_size=3), min_size=1, max_size=8, unique_by=tuple),
    st.integers(0, 8),
)
def test_stems_unique_and_stable_under_additions(parts: list[list[str]], split: int) -> None:
    rels = [Path(*p).with_suffix(".json") for p in parts]
    first = rels[:split]
    before = dict(zip((r.as_posix() for r in first), stems_for(first), strict=True))
    after = stems_for(rels, before)
    assert len({stem.casefold() for stem in after}) == len(rels)
    assert after[: len(first)] == [before[r.as_posix()] for r in first]
    assert all("/" not in stem and stem not in ("", ".", "..") for stem in after)


def test_resolve_labels(tmp_path: Path) -> None:
    assert resolve_labels(None) is None
    assert resolve_labels("a/b,c").names == ("_background_", "a/b", "c")  # type: ignore[union-attr]
    assert resolve_labels("cat").names == ("_background_", "cat")  # type: ignore[union-attr]
    assert resolve_labels(["x", "y"]).names == ("_background_", "x", "y")  # type: ignore[union-attr]
    with pytest.raises(OptionError, match=r"file not found.*end it with a comma"):
        resolve_labels("a/b")
    with pytest.raises(OptionError, match="file not found"):
        resolve_labels("classes.txt")
    binary = tmp_path / "labels.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="not UTF-8 text"):
        resolve_labels(str(binary))
    with pytest.raises(DatasetError, match="duplicate"):
        resolve_labels("cat,cat")


def test_parse_label_map() -> None:
    assert parse_label_map(["a=b", " c = d ", "e=f=g"]) == {"a": "b", "c": "d", "e": "f=g"}
    for bad in ("a", "=b", "a="):
        with pytest.raises(OptionError, match="expected OLD=NEW"):
            parse_label_map([bad])


def test_edited_manifest_never_deletes_outside_the_dataset(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    out = tmp_path / "out"
    convert(tmp_path / "in", out, workers=1)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    data = manifest(out)
    data["samples"].append(
        {
            **data["samples"][0],
            "id": "gone",
            "source": "gone.json",
            "image": "../victim.txt",
            "class_mask": str(victim),
            "object_mask": ".",
        }
    )
    (out / "segkit.json").write_text(json.dumps(data), encoding="utf-8")
    summary = convert(tmp_path / "in", out, workers=1)
    assert summary.removed == ["gone"] and summary.ok
    assert victim.read_text(encoding="utf-8") == "precious"
    assert (out / "JPEGImages/a.jpg").is_file()


def test_leftover_temp_files_are_cleaned(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    out = tmp_path / "out"
    convert(tmp_path / "in", out, workers=1)
    leftover = out / "JPEGImages/.a.jpg.0f1e2d3c.tmp"
    leftover.write_bytes(b"half a jpeg")  # what a killed run leaves behind
    convert(tmp_path / "in", out, workers=1)
    assert not leftover.exists()


def _consistent(out: Path) -> None:
    """Every listed output exists and every output on disk is listed."""
    listed = {
        sample[key]
        for sample in manifest(out)["samples"]
        for key in ("image", "class_mask", "object_mask", "visualization")
        if key in sample
    }
    on_disk = {
        path.relative_to(out).as_posix()
        for path in out.rglob("*")
        if path.is_file() and path.parent != out
    }
    assert listed == on_disk


def test_fail_fast_with_workers_leaves_a_consistent_dataset(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    for index in range(8):
        add_sample(folder, f"f{index}")
    (folder / "f0.json").write_text("{", encoding="utf-8")
    summary = convert(folder, out, workers=2, fail_fast=True, viz=True)
    assert len(summary.failures) == 1 and "f0.json" in summary.failures[0]
    _consistent(out)
    summary = convert(folder, out, workers=2, viz=True)
    assert summary.images == 7
    _consistent(out)


def test_outputs_identical_across_runs(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    add_sample(tmp_path / "in/s", "b", [shape("dog", "circle", [[5, 5], [9, 9]])])
    convert(tmp_path / "in", tmp_path / "o1", workers=1, viz=True)
    convert(tmp_path / "in", tmp_path / "o2", workers=1, viz=True)
    assert tree_hashes(tmp_path / "o1") == tree_hashes(tmp_path / "o2")


def test_existing_outputs_are_grouped_by_sample_id(tmp_path: Path) -> None:
    for relative in [
        "JPEGImages/a.jpg",
        "JPEGImages/a.png",
        "JPEGImages/b.v2.tif",
        "JPEGImages/notes.txt",
        "JPEGImages/c.JPG",
        "SegmentationClassVisualization/a.jpg",
        "SegmentationClass/a.png",
    ]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    assert existing_outputs_by_stem(tmp_path) == {
        "a": ("JPEGImages/a.jpg", "JPEGImages/a.png", "SegmentationClassVisualization/a.jpg"),
        "b.v2": ("JPEGImages/b.v2.tif",),
    }
    assert existing_outputs_by_stem(tmp_path / "missing") == {}


@given(st.lists(st.lists(st.sampled_from(["cat", "dog", "__ignore__", "new"]), max_size=5)))
def test_fingerprints_once_per_label_set_equal_each_files_own(labels: list[list[str]]) -> None:
    options = {"format_version": 3, "labels": {"cat": 1}, "map": {}, "viz": False}
    ids = {"_background_": 0, "cat": 1, "dog": 2, "__ignore__": 255}
    shared = Fingerprints(options, ids)
    assert [shared.of(each) for each in labels] == [
        Fingerprints(options, ids).of(each) for each in labels
    ]
