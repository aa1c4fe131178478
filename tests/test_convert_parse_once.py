"""``segkit convert`` parses each labelme file once: the label scan's parse is reused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_convert import add_sample, labelme_doc, shape, tree_hashes, write_json

import segkit.convert_one
import segkit.convert_stage
from segkit._io import sha256_bytes
from segkit.convert_one import Parsed
from segkit.convert_stage import convert
from segkit.labelme import Annotation, parse_annotation


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"scan": 0, "convert": 0}

    def counting(where: str) -> Callable[[Path, bytes], Annotation]:
        def parse(path: Path, raw: bytes) -> Annotation:
            counts[where] += 1
            return parse_annotation(path, raw)

        return parse

    monkeypatch.setattr(segkit.convert_stage, "parse_annotation", counting("scan"))
    monkeypatch.setattr(segkit.convert_one, "parse_annotation", counting("convert"))
    return counts


@pytest.mark.parametrize("labels", ["cat,dog", None])  # given, and discovered
def test_each_file_is_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, labels: str | None
) -> None:
    for name in ("a", "b", "c"):
        add_sample(tmp_path / "in", name, [shape("cat", "polygon", [[1, 1], [9, 2], [5, 8]])])
    counts = _count_parses(monkeypatch)
    summary = convert(tmp_path / "in", tmp_path / "out", labels=labels, workers=1)
    assert summary.converted == 3 and not summary.failures
    assert counts == {"scan": 3, "convert": 0}


def test_same_outputs_as_parsing_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        add_sample(
            tmp_path / "in",
            name,
            [
                shape("cat", "polygon", [[1, 1], [20, 2], [12, 18]]),
                shape("dog", "circle", [[15, 10], [19, 12]], group_id=3),
            ],
        )
    convert(tmp_path / "in", tmp_path / "once", labels="cat,dog", workers=1)
    monkeypatch.setattr(segkit.convert_stage, "_PARSED_BUDGET", -1)  # nothing handed on
    counts = _count_parses(monkeypatch)
    convert(tmp_path / "in", tmp_path / "twice", labels="cat,dog", workers=1)
    assert counts == {"scan": 2, "convert": 2}
    once, twice = tree_hashes(tmp_path / "once"), tree_hashes(tmp_path / "twice")
    manifests = {"segkit.json"}
    assert {k: v for k, v in once.items() if k not in manifests} == {
        k: v for k, v in twice.items() if k not in manifests
    }


def test_a_file_changed_after_the_scan_is_parsed_again(tmp_path: Path) -> None:
    path = add_sample(tmp_path / "in", "a", [shape("cat", "point", [[3, 3]])])
    raw = path.read_bytes()
    parsed = Parsed.of(parse_annotation(path, raw), raw)
    assert parsed is not None
    assert parsed.annotation(raw, sha256_bytes(raw)) == parse_annotation(path, raw)
    changed = raw.replace(b"cat", b"dog")
    assert parsed.annotation(changed, sha256_bytes(changed)) is None


def test_embedded_images_are_not_handed_on(tmp_path: Path) -> None:
    doc = labelme_doc(
        [shape("cat", "point", [[3, 3]])], image_path=None, size=None, image_data=b"\xff\xd8"
    )
    path = write_json(tmp_path / "x.json", doc)
    raw = path.read_bytes()
    assert Parsed.of(parse_annotation(path, raw), raw) is None
