"""`segkit validate` end to end: one planted defect per check, each reported alone."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from test_validate import (
    STEMS,
    image_pixels,
    jpeg_bytes,
    make_voc,
    masks_for,
    write_manifest,
)
from typer.testing import CliRunner

from segkit.cli import app
from segkit.imagehash import hamming_distance, hash_image_file
from segkit.validate import SEVERITY
from segkit.voc import encode_palette_png, encode_uint16_png, voc_colormap

runner = CliRunner()
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


def run_json(root: Path, *options: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["validate", str(root), "--json", "--workers", "1", *options])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def checks_and_files(report: dict) -> list[tuple[str, str]]:
    return sorted((f["check"], f["file"]) for f in report["findings"])


# --- planting helpers ----------------------------------------------------------------


def write_mask(root: Path, kind: str, stem: str, mask: np.ndarray) -> None:
    folder = "SegmentationClass" if kind == "class" else "SegmentationObject"
    (root / folder / f"{stem}.png").write_bytes(encode_palette_png(mask))


def edit_masks(stem: str, edit: Callable[[np.ndarray, np.ndarray], None]) -> Callable[[Path], None]:
    """A planter that rewrites both masks of ``stem`` after ``edit(cls, obj)`` changes them."""
    index = STEMS.index(stem)

    def plant(root: Path) -> None:
        cls, obj = masks_for(index)
        edit(cls, obj)
        write_mask(root, "class", stem, cls)
        write_mask(root, "object", stem, obj)

    return plant


def edit_split(name: str, change: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        path = root / "ImageSets/Segmentation" / f"{name}.txt"
        stems = change(path.read_text(encoding="utf-8").split())
        path.write_text("".join(f"{s}\n" for s in stems), encoding="utf-8")

    return plant


def both(*planters: Callable[[Path], None]) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        for planter in planters:
            planter(root)

    return plant


def truncate(relative: str, keep: float = 0.5) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        data = (root / relative).read_bytes()
        (root / relative).write_bytes(data[: int(len(data) * keep)])

    return plant


def write_bytes(relative: str, data: bytes) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        (root / relative).write_bytes(data)

    return plant


def copy_file(source: str, target: str) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        shutil.copyfile(root / source, root / target)

    return plant


def delete(*relatives: str) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        for relative in relatives:
            (root / relative).unlink()

    return plant


def rgb_class_mask(root: Path) -> None:
    cls, _ = masks_for(1)
    PIL.Image.fromarray(voc_colormap()[cls]).save(root / "SegmentationClass/s1.png")


def sixteen_bit_class_mask(root: Path) -> None:
    cls, _ = masks_for(1)
    (root / "SegmentationClass/s1.png").write_bytes(encode_uint16_png(cls))


def rotated_with_exif(orientation: int) -> Callable[[Path], None]:
    """Store s3's pixels so that applying the EXIF tag gives back the original image."""
    undo = {6: PIL.Image.Transpose.ROTATE_90, 3: PIL.Image.Transpose.ROTATE_180}[orientation]

    def plant(root: Path) -> None:
        stored = PIL.Image.fromarray(image_pixels(3)).transpose(undo)
        exif = PIL.Image.Exif()
        exif[0x0112] = orientation
        data = jpeg_bytes(np.asarray(stored), exif=exif.tobytes())
        (root / "JPEGImages/s3.jpg").write_bytes(data)

    return plant


def near_duplicate_of_s2(root: Path) -> None:
    """s1 becomes s2 with a small bright patch: a few bits of dHash apart, not identical."""
    original = hash_image_file(root / "JPEGImages/s2.jpg")
    for size in range(3, 9):
        pixels = image_pixels(2).copy()
        pixels[:size, :size] = 255
        (root / "JPEGImages/s1.jpg").write_bytes(jpeg_bytes(pixels))
        if 1 <= hamming_distance(original, hash_image_file(root / "JPEGImages/s1.jpg")) <= 4:
            return
    raise AssertionError("could not make a near-duplicate within 1..4 bits")


def class_names(text: str) -> Callable[[Path], None]:
    return write_bytes("class_names.txt", text.encode())


def on_background(cls: np.ndarray, obj: np.ndarray) -> None:
    obj[0, 0] = 1


def instance_spans_classes(cls: np.ndarray, obj: np.ndarray) -> None:
    cls[2, obj[2] == 1] = 2


def unknown_id(cls: np.ndarray, obj: np.ndarray) -> None:
    cls[15, 0] = 7


def all_background(cls: np.ndarray, obj: np.ndarray) -> None:
    cls[:] = 0
    obj[:] = 0


def all_ignore(cls: np.ndarray, obj: np.ndarray) -> None:
    cls[:] = 255


IMG, CLS, OBJ = "JPEGImages", "SegmentationClass", "SegmentationObject"
SPLIT = "ImageSets/Segmentation"

# check → (planter, expected files); the clean corpus plus that one defect must yield
# exactly these findings of exactly this check.
PLANTED: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "empty-file": (write_bytes(f"{IMG}/s2.jpg", b""), [f"{IMG}/s2.jpg"]),
    "unreadable": (write_bytes(f"{IMG}/s2.jpg", b"this is not a JPEG"), [f"{IMG}/s2.jpg"]),
    "truncated": (truncate(f"{IMG}/s2.jpg"), [f"{IMG}/s2.jpg"]),
    "missing-mask": (delete(f"{CLS}/s1.png"), [f"{IMG}/s1.jpg"]),
    "missing-image": (delete(f"{IMG}/s1.jpg"), [f"{CLS}/s1.png"]),
    "unlabelled-image": (
        both(delete(f"{CLS}/s5.png", f"{OBJ}/s5.png"), edit_split("test", lambda s: [])),
        [IMG],
    ),
    "duplicate-stem": (
        write_bytes(f"{IMG}/s1.png", b"a second image called s1"),
        [f"{IMG}/s1.png"],
    ),
    "size-mismatch": (
        lambda root: write_mask(root, "class", "s1", masks_for(1)[0][:, :-1]),
        [f"{CLS}/s1.png"],
    ),
    "exif-orientation": (rotated_with_exif(6), [f"{IMG}/s3.jpg"]),
    "rgb-mask": (rgb_class_mask, [f"{CLS}/s1.png"]),
    "mask-encoding": (sixteen_bit_class_mask, [f"{CLS}/s1.png"]),
    "unknown-class-id": (edit_masks("s1", unknown_id), [f"{CLS}/s1.png"]),
    "instance-on-background": (edit_masks("s1", on_background), [f"{OBJ}/s1.png"]),
    "instance-class-conflict": (edit_masks("s1", instance_spans_classes), [f"{OBJ}/s1.png"]),
    "all-background": (edit_masks("s1", all_background), [f"{CLS}/s1.png"]),
    "all-ignore": (edit_masks("s1", all_ignore), [f"{CLS}/s1.png"]),
    "class-never-present": (class_names("_background_\ncat\ndog\nbird\n"), ["class_names.txt"]),
    "duplicate-image": (copy_file(f"{IMG}/s0.jpg", f"{IMG}/s1.jpg"), [f"{IMG}/s0.jpg"]),
    "split-leakage": (copy_file(f"{IMG}/s0.jpg", f"{IMG}/s4.jpg"), [f"{IMG}/s0.jpg"]),
    "near-duplicate": (near_duplicate_of_s2, [f"{IMG}/s1.jpg"]),
    "split-unknown-stem": (edit_split("test", lambda s: [*s, "ghost"]), [f"{SPLIT}/test.txt"]),
    "split-overlap": (edit_split("test", lambda s: [*s, "s4"]), [f"{SPLIT}/test.txt"]),
    "split-unassigned": (
        both(
            edit_split("train", lambda s: [x for x in s if x != "s3"]),
            edit_split("trainval", lambda s: [x for x in s if x != "s3"]),
        ),
        [SPLIT],
    ),
    "split-trainval-mismatch": (
        edit_split("trainval", lambda s: s[1:]),
        [f"{SPLIT}/trainval.txt"],
    ),
    "no-class-list": (delete("class_names.txt"), [""]),
}


def _mismatching_mask(root: Path) -> None:
    # Same pixels, different bytes: only the manifest can tell.
    cls, _ = masks_for(1)
    image = PIL.Image.open(io.BytesIO(encode_palette_png(cls)))
    image.save(root / f"{CLS}/s1.png", compress_level=1)


def _edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        manifest = json.loads((root / "segkit.json").read_text(encoding="utf-8"))
        change(manifest)
        (root / "segkit.json").write_text(json.dumps(manifest), encoding="utf-8")

    return plant


def _ghost_sample(manifest: dict) -> None:
    manifest["samples"].append(
        {"id": "s9", "image": f"{IMG}/s9.jpg", "class_mask": f"{CLS}/s9.png"}
    )


def _drop_sample(manifest: dict) -> None:
    manifest["samples"] = [s for s in manifest["samples"] if s["id"] != "s2"]


# Planted into a corpus that has a segkit.json (written before the defect).
PLANTED_WITH_MANIFEST: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "manifest-mismatch": (_mismatching_mask, [f"{CLS}/s1.png"]),
    "manifest-missing-file": (_edit_manifest(_ghost_sample), [f"{CLS}/s9.png", f"{IMG}/s9.jpg"]),
    "not-in-manifest": (_edit_manifest(_drop_sample), [f"{IMG}/s2.jpg"]),
}


def test_every_check_has_a_planted_defect() -> None:
    assert set(PLANTED) | set(PLANTED_WITH_MANIFEST) == set(SEVERITY)


@pytest.mark.parametrize("check", sorted(PLANTED))
def test_planted_defect_is_reported_alone(tmp_path: Path, check: str) -> None:
    root = make_voc(tmp_path / "voc")
    plant, files = PLANTED[check]
    plant(root)
    code, report = run_json(root)
    assert checks_and_files(report) == sorted((check, file) for file in files), report
    assert code == (1 if SEVERITY[check] == "error" else 0)
    assert report["errors"] + report["warnings"] == len(files)


@pytest.mark.parametrize("check", sorted(PLANTED_WITH_MANIFEST))
def test_planted_manifest_defect_is_reported_alone(tmp_path: Path, check: str) -> None:
    root = make_voc(tmp_path / "voc")
    write_manifest(root)
    plant, files = PLANTED_WITH_MANIFEST[check]
    plant(root)
    code, report = run_json(root)
    assert checks_and_files(report) == sorted((check, file) for file in files), report
    assert code == (1 if SEVERITY[check] == "error" else 0)


def test_class_list_differing_from_manifest(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    write_manifest(root)
    (root / "class_names.txt").write_text("_background_\ndog\ncat\n", encoding="utf-8")
    code, report = run_json(root)
    assert checks_and_files(report) == [("manifest-mismatch", "class_names.txt")]
    assert code == 1


def test_exif_detail_names_the_mask_frame(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "a")
    rotated_with_exif(6)(root)
    [item] = run_json(root)[1]["findings"]
    assert "EXIF orientation 6" in item["detail"] and "EXIF-oriented frame" in item["detail"]
    # A 180° turn keeps the size: the frame is unknown unless segkit convert wrote the masks.
    root = make_voc(tmp_path / "b")
    rotated_with_exif(3)(root)
    [item] = run_json(root)[1]["findings"]
    assert "cannot tell which frame" in item["detail"]
    write_manifest(root)
    [item] = run_json(root)[1]["findings"]
    assert "EXIF-oriented frame" in item["detail"]


def test_rgb_mask_detail_says_how_to_convert(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    rgb_class_mask(root)
    [item] = run_json(root)[1]["findings"]
    assert "converts losslessly" in item["detail"] and "palette" in item["detail"]


def test_near_duplicate_distance_option(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    near_duplicate_of_s2(root)
    assert run_json(root, "--near-duplicate-distance", "0")[1]["findings"] == []
    result = runner.invoke(app, ["validate", str(root), "--near-duplicate-distance", "65"])
    assert result.exit_code == 2


def test_clean_hand_made_voc_exits_zero_with_table(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    result = runner.invoke(app, ["validate", str(root), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "no problems found in 6 samples" in result.stdout
    code, report = run_json(root)
    assert (code, report["findings"], report["samples"]) == (0, [], 6)


def test_table_lists_findings_and_summary(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    delete(f"{CLS}/s1.png")(root)
    class_names("_background_\ncat\ndog\nbird\n")(root)
    result = runner.invoke(app, ["validate", str(root), "--workers", "1"])
    assert result.exit_code == 1
    for text in ("missing-mask", "JPEGImages/s1.jpg", "class-never-present", "bird"):
        assert text in result.stdout
    assert "1 error, 1 warning in 6 samples" in result.stdout


def test_missing_dataset_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["validate", str(empty)])
    assert result.exit_code == 1
    assert "is this a VOC dataset" in result.output


def test_subprocess_with_worker_pool(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    copy_file(f"{IMG}/s0.jpg", f"{IMG}/s4.jpg")(root)
    command = [sys.executable, "-m", "segkit"]
    result = subprocess.run(
        [*command, "validate", str(root), "--json", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert checks_and_files(json.loads(result.stdout)) == [("split-leakage", f"{IMG}/s0.jpg")]


@pytest.mark.skipif(not SAMPLE_DATA.is_dir(), reason="no sample_data")
def test_dataset_from_segkit_convert_validates_clean(tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["convert", str(SAMPLE_DATA), "-o", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    code, report = run_json(out)
    assert (code, report["findings"]) == (0, []), report
    # ... and still after segkit split wrote its lists (plain, then cross-validation folds).
    for options in (["--val", "0.3", "--test", "0.2"], ["--folds", "2", "--reshuffle"]):
        result = runner.invoke(app, ["split", str(out), *options])
        assert result.exit_code == 0, result.output
        code, report = run_json(out)
        assert (code, report["findings"]) == (0, []), (options, report)


def test_unreadable_manifest_is_one_error_line(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "segkit.json").write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(root)])
    assert result.exit_code == 1
    assert "segkit.json: not valid JSON" in result.output
    assert "Traceback" not in result.output


def test_split_file_in_another_encoding_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "ImageSets/Segmentation/val.txt").write_bytes("s4\nbœuf\n".encode("cp1252"))
    result = runner.invoke(app, ["validate", str(root), "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "unreadable" in result.stdout and "not UTF-8" in result.stdout
    code, report = run_json(root)
    assert code == 1 and ("unreadable", "ImageSets/Segmentation/val.txt") in checks_and_files(
        report
    )


def test_non_utf8_class_list_is_one_error_line(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "class_names.txt").write_bytes("_background_\nchat\nbœuf\n".encode("cp1252"))
    result = runner.invoke(app, ["validate", str(root), "--workers", "1"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "class_names.txt: label list is not UTF-8 text" in lines[0]


def test_markup_in_paths_and_stems_is_printed_literally(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "[b]ds")
    (root / "JPEGImages/[red]x.jpg").write_bytes((root / "JPEGImages/s0.jpg").read_bytes())
    result = runner.invoke(app, ["validate", str(root), "--workers", "1"])
    assert "JPEGImages/[red]x.jpg" in result.stdout, result.stdout
