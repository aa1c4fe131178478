"""The input folder is listed once, with ``os.scandir``: the same files, in the same order,
and the same skipped entries as the ``Path.rglob`` listing it replaced (kept here as the
reference), on random trees of files, folders, links, hidden names and datasets."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segkit.convert_stage import _is_dataset, _real_path, find_annotations, skipped_entries
from segkit.manifest import new_manifest, save_manifest


def reference_find(input_dir: Path, exclude: Path | None = None) -> list[Path]:
    paths = sorted(input_dir.rglob("*"))
    datasets = {
        path.parent.relative_to(input_dir).parts
        for path in paths
        if path.name == "segkit.json" and path.parent != input_dir and _is_dataset(path.parent)
    }
    found = []
    real_folders: dict[Path, Path] = {}
    for path in paths:
        if path.suffix.lower() != ".json":
            continue
        relative = path.relative_to(input_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if any(relative.parts[:depth] in datasets for depth in range(1, len(relative.parts))):
            continue
        if exclude is not None and _real_path(path, real_folders).is_relative_to(exclude):
            continue
        found.append(path)
    return found


def reference_skipped(input_dir: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for path in input_dir.rglob("*"):
        relative = path.relative_to(input_dir)
        if path.is_symlink() and path.is_dir():
            counts["symlinked folder"] += 1
        elif path.suffix.lower() == ".json" and any(p.startswith(".") for p in relative.parts):
            counts["hidden file"] += 1
    return dict(sorted(counts.items()))


_NAMES = st.sampled_from(
    [
        "a.json",
        "B.JSON",
        ".h.json",
        "..json",
        ".json",
        "x.json.",
        "c.Json",
        "d.txt",
        "e",
        "segkit.json",
        "f.tar.json",
        "Z.json",
        "sub",
        ".hidden",
        "ds",
        "é.json",
    ]
)
_KINDS = st.sampled_from(["file", "folder", "dataset", "link", "broken-link"])
_TREE = st.lists(st.tuples(st.lists(_NAMES, min_size=1, max_size=3), _KINDS), max_size=14)


def _build(root: Path, tree: list[tuple[list[str], str]]) -> None:
    """Make what ``tree`` describes, where it can be made (a file may stand where a
    later entry wants a folder, and a link may point at itself: a loop)."""
    root.mkdir()
    made: list[Path] = []
    for parts, kind in tree:
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                continue
            if kind == "file":
                path.write_text("{}", encoding="utf-8")
            elif kind == "folder":
                path.mkdir()
            elif kind == "dataset":
                path.mkdir()
                save_manifest(path, new_manifest(["_background_"], []))
            elif kind == "broken-link":
                path.symlink_to(root / "nowhere")
            elif made:
                path.symlink_to(made[len(made) // 2])  # a file or a folder, as it falls
            else:
                path.symlink_to(path.name)  # a link to itself
        except OSError:
            continue  # in the way of an earlier entry: the tree has one entry fewer
        made.append(path)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=_TREE)
@example(tree=[(["a.json"], "link"), (["a.json"], "link"), (["a.json", "a.json"], "file")])
@example(tree=[(["sub"], "folder"), (["sub", "x.json"], "file"), (["lnk"], "link")])
def test_the_listing_equals_rglob(tmp_path: Path, tree) -> None:
    root = tmp_path / "in"
    shutil.rmtree(root, ignore_errors=True)
    _build(root, tree)
    assert find_annotations(root) == reference_find(root)
    assert skipped_entries(root) == reference_skipped(root)
    sub = root / "sub"
    if sub.is_dir() and not sub.is_symlink():  # an output folder inside the input
        assert find_annotations(root, sub.resolve()) == reference_find(root, sub.resolve())


@pytest.mark.parametrize("missing", ["nowhere", "a_file"])
def test_a_missing_or_file_input_lists_nothing(tmp_path: Path, missing: str) -> None:
    (tmp_path / "a_file").write_text("x")
    assert find_annotations(tmp_path / missing) == reference_find(tmp_path / missing) == []
    assert skipped_entries(tmp_path / missing) == {}
