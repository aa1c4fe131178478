"""validate: the pure checks on tiny arrays, and the shell on a tiny generated VOC folder.

``make_voc`` builds the clean corpus that the CLI tests (test_cli_validate.py) plant
one defect at a time into.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import voc_builder

from segkit._io import sha256_file
from segkit.dataset import Dataset, Sample
from segkit.manifest import new_manifest
from segkit.validate import (
    SEVERITY,
    Finding,
    class_presence_findings,
    class_value_issues,
    disjoint_split_groups,
    duplicate_findings,
    geometry_issues,
    instance_issues,
    near_duplicate_findings,
    rgb_mask_advice,
    sort_findings,
    split_findings,
)
from segkit.validate_stage import validate, validate_dataset
from segkit.voc import encode_uint16_png, voc_colormap

CLASSES = ("_background_", "cat", "dog")
WIDTH, HEIGHT = 24, 16
STEMS = tuple(f"s{i}" for i in range(6))
SPLITS = {"train": STEMS[:4], "val": STEMS[4:5], "test": STEMS[5:], "trainval": STEMS[:5]}


def image_pixels(index: int) -> np.ndarray:
    """A smooth random RGB image, different enough from every other index to hash apart."""
    rng = np.random.default_rng(index)
    small = PIL.Image.fromarray((rng.random((4, 6, 3)) * 255).astype(np.uint8))
    return np.asarray(small.resize((WIDTH, HEIGHT), PIL.Image.Resampling.BILINEAR))


def jpeg_bytes(pixels: np.ndarray, **save: object) -> bytes:
    return voc_builder.jpeg_bytes(pixels, quality=95, **save)


def masks_for(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Class and instance masks: a cat (instance 1) and a dog (instance 2), ignore border."""
    cls = np.zeros((HEIGHT, WIDTH), np.uint8)
    obj = np.zeros((HEIGHT, WIDTH), np.uint8)
    x = 2 + index
    cls[2:7, x : x + 6], obj[2:7, x : x + 6] = 1, 1
    cls[9:14, 12:20], obj[9:14, 12:20] = 2, 2
    cls[8, 12:20], obj[8, 12:20] = 255, 255  # VOC-style void border
    return cls, obj


def make_voc(root: Path, *, object_masks: bool = True, splits: bool = True) -> Path:
    """A clean hand-made VOC folder: 6 JPEGs, palette masks, class_names.txt, split files."""
    masks = {stem: masks_for(index) for index, stem in enumerate(STEMS)}
    return voc_builder.write_voc(
        root,
        {stem: cls for stem, (cls, _) in masks.items()},
        images={stem: jpeg_bytes(image_pixels(index)) for index, stem in enumerate(STEMS)},
        object_masks={stem: obj for stem, (_, obj) in masks.items()} if object_masks else None,
        classes=CLASSES,
        splits=SPLITS if splits else None,
    )


def write_manifest(root: Path) -> None:
    """A segkit.json as segkit convert writes it, with hashes of what is on disk now."""
    samples = []
    for stem in STEMS:
        entry: dict[str, object] = {
            "id": stem,
            "image": f"JPEGImages/{stem}.jpg",
            "class_mask": f"SegmentationClass/{stem}.png",
            "height": HEIGHT,
            "width": WIDTH,
        }
        if (root / "SegmentationObject" / f"{stem}.png").is_file():
            entry["object_mask"] = f"SegmentationObject/{stem}.png"
        for kind in ("image", "class_mask", "object_mask"):
            if kind in entry:
                entry[f"{kind}_sha256"] = sha256_file(root / str(entry[kind]))
        samples.append(entry)
    text = json.dumps(new_manifest(list(CLASSES), samples), indent=2)
    (root / "segkit.json").write_text(text, encoding="utf-8")


def pairs(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.check, f.file) for f in findings]


# --- pure checks -------------------------------------------------------------------


def test_every_check_is_documented() -> None:
    import segkit.validate as module

    documented = {
        line.split()[0]
        for line in (module.__doc__ or "").splitlines()
        if line.strip() and line.split()[0] in SEVERITY
    }
    assert documented == set(SEVERITY)
    assert set(SEVERITY.values()) == {"error", "warning"}


def test_class_values_unknown_ids_and_degenerate_masks() -> None:
    def counts(values: list[int]) -> np.ndarray:
        return np.bincount(np.array(values), minlength=256)

    assert class_value_issues(counts([0, 1, 2, 255]), 3) == []
    [(check, detail)] = class_value_issues(counts([0, 3, 3, 9, 255]), 3)
    assert check == "unknown-class-id"
    assert "3 (2 px), 9 (1 px)" in detail and "0..2" in detail
    assert [c for c, _ in class_value_issues(counts([0, 0, 255]), 3)] == ["all-background"]
    assert [c for c, _ in class_value_issues(counts([0, 0]), 3)] == ["all-background"]
    assert [c for c, _ in class_value_issues(counts([255]), 3)] == ["all-ignore"]
    # Without a class list any value is accepted; the degenerate checks still run.
    assert class_value_issues(counts([0, 77]), 0) == []


def test_instance_consistency() -> None:
    cls = np.array([[0, 1, 1, 255], [2, 2, 0, 255]], np.uint8)
    good = np.array([[0, 1, 1, 255], [2, 2, 0, 255]], np.uint8)
    assert instance_issues(cls, good) == []
    # Instances may cover ignore pixels; class pixels without an instance are allowed.
    assert instance_issues(cls, np.array([[0, 1, 0, 1], [0, 2, 0, 0]], np.uint8)) == []
    on_bg = good.copy()
    on_bg[0, 0] = 3
    [(check, detail)] = instance_issues(cls, on_bg)
    assert check == "instance-on-background" and "instance 3" in detail
    spans = good.copy()
    spans[1, :2] = 1
    [(check, detail)] = instance_issues(cls, spans, class_names=CLASSES)
    assert check == "instance-class-conflict"
    assert "instance 1 covers classes 1 (cat), 2 (dog)" in detail


def test_instance_consistency_16_bit_ignore() -> None:
    cls = np.array([[0, 1, 1]], np.uint8)
    obj = np.array([[65535, 300, 300]], np.uint16)
    assert instance_issues(cls, obj, object_ignore=65535) == []
    assert instance_issues(cls, obj, object_ignore=255)[0][0] == "instance-on-background"
    with pytest.raises(ValueError, match="shapes differ"):
        instance_issues(cls, obj[:, :2])


def test_rgb_advice_voc_colours_convert_losslessly() -> None:
    ids = np.array([[0, 1], [15, 255]], np.uint8)
    advice, converted = rgb_mask_advice(voc_colormap()[ids])
    assert "converts losslessly" in advice and "0, 1, 15, 255" in advice
    np.testing.assert_array_equal(converted, ids)


def test_rgb_advice_other_colours() -> None:
    gray = np.repeat(np.array([[0, 1], [1, 2]], np.uint8)[..., None], 3, axis=2)
    advice, converted = rgb_mask_advice(gray)
    assert converted is None and "three equal channels" in advice
    odd = np.zeros((2, 2, 3), np.uint8)
    odd[0, 0] = (12, 34, 56)
    advice, converted = rgb_mask_advice(odd)
    assert converted is None and "(12, 34, 56)" in advice and "palette" in advice


def test_geometry_sizes_and_exif_frames() -> None:
    assert geometry_issues((24, 16), 1, {"m.png": (24, 16)}) == []
    [(check, file, _)] = geometry_issues((24, 16), 1, {"m.png": (23, 16)})
    assert (check, file) == ("size-mismatch", "m.png")
    # A quarter turn whose rotated size is the mask's: the frame is known, no size error.
    [(check, file, detail)] = geometry_issues((16, 24), 6, {"m.png": (24, 16)})
    assert (check, file) == ("exif-orientation", "")
    assert "EXIF-oriented frame" in detail
    [(_, _, detail)] = geometry_issues((24, 16), 8, {"m.png": (24, 16)})
    assert "stored pixel frame" in detail
    [(_, _, detail)] = geometry_issues((24, 16), 3, {"m.png": (24, 16)})
    assert "cannot tell which frame" in detail
    [(_, _, detail)] = geometry_issues(
        (24, 16), 3, {"m.png": (24, 16)}, labels_in_oriented_frame=True
    )
    assert "EXIF-oriented frame" in detail
    checks = [c for c, _, _ in geometry_issues((16, 24), 6, {"m.png": (10, 10)})]
    assert checks == ["size-mismatch", "exif-orientation"]


def test_split_checks() -> None:
    known = ["a", "b", "c", "d"]
    ok = {"train": ["a", "b"], "val": ["c"], "test": ["d"], "trainval": ["a", "b", "c"]}
    assert split_findings(known, ok) == []
    assert split_findings(known, {}) == []
    bad = {"train": ["a", "b", "x"], "val": ["b"], "trainval": ["a", "b"]}
    assert sorted(pairs(split_findings(known, bad))) == [
        ("split-overlap", "ImageSets/Segmentation/val.txt"),
        ("split-trainval-mismatch", "ImageSets/Segmentation/trainval.txt"),
        ("split-unassigned", "ImageSets/Segmentation"),
        ("split-unknown-stem", "ImageSets/Segmentation/train.txt"),
    ]


def test_fold_files_must_keep_train_val_and_test_apart() -> None:
    known = ["a", "b", "c", "d"]
    folds = {
        "fold0_train": ["a", "b"],
        "fold0_val": ["c"],
        "fold1_train": ["a", "c"],
        "fold1_val": ["b"],
        "test": ["d"],
    }
    assert split_findings(known, folds) == []
    folds["fold1_train"] = ["a", "b", "c"]
    folds["fold0_val"] = ["c", "d"]
    assert sorted(pairs(split_findings(known, folds))) == [
        ("split-overlap", "ImageSets/Segmentation/fold1_val.txt"),
        ("split-overlap", "ImageSets/Segmentation/test.txt"),
    ]
    # A stem listed only in fold files is not "in no split" of train/val/test.
    assert split_findings(known, {"fold0_train": known, "fold0_val": []}) == []


def test_duplicates_within_and_across_splits() -> None:
    files = {k: f"JPEGImages/{k}.jpg" for k in "abcd"}
    sha = {"a": "1", "b": "1", "c": "2", "d": "2"}
    split_of = {"a": {"train"}, "b": {"train"}, "c": {"train"}, "d": {"val"}}
    found = duplicate_findings(sha, files, split_of)
    assert sorted(pairs(found)) == [
        ("duplicate-image", "JPEGImages/a.jpg"),
        ("split-leakage", "JPEGImages/c.jpg"),
    ]
    leak = next(f for f in found if f.check == "split-leakage")
    assert leak.severity == "error" and "train" in leak.detail and "val" in leak.detail


def test_duplicates_across_one_folds_train_and_val_leak() -> None:
    splits = {
        "fold0_train": ["a", "b"],
        "fold0_val": ["c", "d"],
        "fold1_train": ["c", "d"],
        "fold1_val": ["a", "b"],
    }
    disjoint = disjoint_split_groups(splits)
    split_of: dict[str, set[str]] = {}
    for name, stems in splits.items():
        for stem in stems:
            split_of.setdefault(stem, set()).add(name)
    files = {k: f"{k}.jpg" for k in "abcd"}
    same_side = duplicate_findings({"a": "1", "b": "1"}, files, split_of, disjoint)
    assert pairs(same_side) == [("duplicate-image", "a.jpg")]
    across = duplicate_findings({"a": "1", "c": "1"}, files, split_of, disjoint)
    assert pairs(across) == [("split-leakage", "a.jpg")]


def test_near_duplicates_skip_exact_copies() -> None:
    files = {k: f"{k}.jpg" for k in "abcd"}
    hashes = {"a": 0b1111, "b": 0b1111, "c": 0b0111, "d": (1 << 64) - 1}
    exact = {"a": "x", "b": "x", "c": "y", "d": "z"}
    [near] = near_duplicate_findings(hashes, exact, files, {}, max_distance=1)
    assert (near.check, near.file) == ("near-duplicate", "a.jpg")
    assert "c.jpg (1 bits apart)" in near.detail and "b.jpg" not in near.detail
    assert near_duplicate_findings(hashes, exact, files, {}, max_distance=0) == []


def test_class_presence_and_binary_mask_hint() -> None:
    assert class_presence_findings({0, 1, 2}, CLASSES, "class_names.txt") == []
    [missing] = class_presence_findings({0, 2}, CLASSES, "class_names.txt")
    assert "class 1 (cat)" in missing.detail
    [binary] = class_presence_findings({0, 255}, ("_background_", "fg"), "x", images_with_ignore=4)
    assert "0/255" in binary.detail


def test_sort_is_deterministic_errors_first() -> None:
    items = [
        Finding("warning", "a-check", "x", "d"),
        Finding("error", "z-check", "b", "d"),
        Finding("error", "z-check", "a", "d"),
    ]
    assert sort_findings(items) == [items[2], items[1], items[0]]
    assert sort_findings(reversed(items)) == sort_findings(items)


# --- the shell on a generated dataset ------------------------------------------------


def test_clean_hand_made_voc_has_no_findings(tmp_path: Path) -> None:
    assert validate_dataset(make_voc(tmp_path), workers=1) == []


def test_clean_variants(tmp_path: Path) -> None:
    assert validate_dataset(make_voc(tmp_path / "a", object_masks=False), workers=1) == []
    assert validate_dataset(make_voc(tmp_path / "b", splits=False), workers=1) == []
    with_manifest = make_voc(tmp_path / "c")
    write_manifest(with_manifest)
    assert validate_dataset(with_manifest, workers=1) == []


def test_clean_voc_with_labelme_labels_grayscale_masks_png_images(tmp_path: Path) -> None:
    root = make_voc(tmp_path, object_masks=False)
    (root / "class_names.txt").unlink()
    (root / "labels.txt").write_text("__ignore__\n_background_\ncat\ndog\n", encoding="utf-8")
    for index, stem in enumerate(STEMS):
        (root / f"JPEGImages/{stem}.jpg").unlink()
        PIL.Image.fromarray(image_pixels(index)).save(root / f"JPEGImages/{stem}.png")
        PIL.Image.fromarray(masks_for(index)[0], mode="L").save(
            root / f"SegmentationClass/{stem}.png"
        )
    assert validate_dataset(root, workers=1) == []


def test_sixteen_bit_instance_mask_is_accepted(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    _, obj = masks_for(0)
    wide = obj.astype(np.uint16)
    wide[wide == 1] = 300
    wide[wide == 2] = 301
    wide[wide == 255] = 65535
    (root / "SegmentationObject/s0.png").write_bytes(encode_uint16_png(wide))
    assert validate_dataset(root, workers=1) == []
    wide[0, 0] = 7  # on background
    (root / "SegmentationObject/s0.png").write_bytes(encode_uint16_png(wide))
    assert pairs(validate_dataset(root, workers=1)) == [
        ("instance-on-background", "SegmentationObject/s0.png")
    ]


def test_sixteen_bit_images_are_not_near_duplicates(tmp_path: Path) -> None:
    # Microscopy TIFF/PNG: values far above 255. Hashed after convert("L") they all
    # clipped to white, so every pair was reported as near-identical.
    root = make_voc(tmp_path)
    for index, stem in enumerate(STEMS):
        (root / f"JPEGImages/{stem}.jpg").unlink()
        grey = image_pixels(index)[..., 0].astype(np.uint16) * 200 + 1000
        PIL.Image.fromarray(grey).save(root / f"JPEGImages/{stem}.{'png' if index % 2 else 'tif'}")
    assert validate_dataset(root, workers=1) == []


def test_files_over_the_pixel_limit_are_checked_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_voc(tmp_path)
    # Every 24×16 image and mask is now over twice Pillow's limit (a decompression bomb
    # to Pillow); files already in a dataset are read whatever their size.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    assert validate_dataset(root, workers=1) == []
    assert PIL.Image.MAX_IMAGE_PIXELS == 100
    (root / "SegmentationClass/s1.png").write_bytes(b"not a png")
    assert pairs(validate_dataset(root, workers=1)) == [("unreadable", "SegmentationClass/s1.png")]


def test_class_names_with_byte_order_mark(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "class_names.txt").write_bytes("\n".join(CLASSES).encode("utf-8-sig"))
    assert validate_dataset(root, workers=1) == []


def test_split_file_that_is_not_utf8_is_an_unreadable_finding(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "ImageSets/Segmentation/extra.txt").write_bytes("s0\nbœuf\n".encode("cp1252"))
    findings = validate_dataset(root, workers=1)
    assert pairs(findings) == [("unreadable", "ImageSets/Segmentation/extra.txt")]
    assert "not UTF-8" in findings[0].detail


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_validate_never_modifies_the_dataset_nor_prints(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = make_voc(tmp_path)
    write_manifest(root)
    (root / "SegmentationClass/s1.png").write_bytes(b"")
    (root / "JPEGImages/s2.jpg").write_bytes(b"junk")
    before = _snapshot(root)
    assert validate_dataset(root, workers=2)
    assert _snapshot(root) == before
    assert capfd.readouterr() == ("", "")


def test_parallel_and_serial_agree(tmp_path: Path) -> None:
    root = make_voc(tmp_path)
    (root / "SegmentationClass/s1.png").write_bytes(b"")
    (root / "JPEGImages/s3.jpg").write_bytes((root / "JPEGImages/s4.jpg").read_bytes())
    assert validate_dataset(root, workers=1) == validate_dataset(root, workers=2)


def test_progress_reports_every_sample(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    validate_dataset(make_voc(tmp_path), workers=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (len(STEMS), len(STEMS))


def test_progress_counts_samples_across_worker_chunks(tmp_path: Path) -> None:
    # Enough samples that the worker pool receives several per chunk; the bar used to
    # advance one batch per chunk and stop near 11 % on a 10,000-image dataset.
    samples = tuple(Sample(f"x{i:05d}", None, None, None) for i in range(3000))
    calls: list[tuple[int, int]] = []
    validate(Dataset(tmp_path, (), samples), workers=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3000, 3000)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(calls) > 8


def test_bad_distance_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"0\.\.64"):
        validate_dataset(make_voc(tmp_path), near_duplicate_distance=65)


def test_image_hash_matches_imagehash_module(tmp_path: Path) -> None:
    # split groups near-duplicates with hash_image_file; validate must agree with it.
    from segkit.imagehash import hash_image_file
    from segkit.validate import check_image_bytes

    pixels = image_pixels(1)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    files = {
        "plain.jpg": jpeg_bytes(pixels),
        "rotated.jpg": jpeg_bytes(pixels, exif=exif.tobytes()),
    }
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG", exif=exif.tobytes())
    files["rotated.png"] = buffer.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out = check_image_bytes(data)
        assert out.issues == ()
        assert out.dhash == hash_image_file(tmp_path / name), name
        assert out.size == (WIDTH, HEIGHT)
        assert out.orientation == (1 if name == "plain.jpg" else 6)


def test_truncated_image_with_intact_header_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc")
    jpeg = root / "JPEGImages" / "s0.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-10])
    png_image = root / "JPEGImages" / "s1.png"
    buffer = io.BytesIO()
    PIL.Image.fromarray(image_pixels(1)).save(buffer, format="PNG")
    (root / "JPEGImages" / "s1.jpg").unlink()
    png_image.write_bytes(buffer.getvalue()[:-60])
    found = pairs(validate_dataset(root, workers=1))
    assert ("truncated", "JPEGImages/s0.jpg") in found
    assert ("truncated", "JPEGImages/s1.png") in found


def test_png_with_bytes_after_its_end_chunk_is_fine(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc")
    mask = root / "SegmentationClass" / "s0.png"
    mask.write_bytes(mask.read_bytes() + bytes(64))
    assert validate_dataset(root, workers=1) == []
    mask.write_bytes(mask.read_bytes()[: -64 - 12])  # the IEND chunk cut off
    assert ("truncated", "SegmentationClass/s0.png") in pairs(validate_dataset(root, workers=1))


def test_identical_images_in_different_folds_are_leakage(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", splits=False)
    folder = root / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True, exist_ok=True)
    s0, s1, s2, s3, s4, s5 = STEMS
    folds = {
        "fold0_train": [s0, s1, s2, s3],
        "fold0_val": [s4, s5],
        "fold1_train": [s0, s1, s4, s5],
        "fold1_val": [s2, s3],
        "fold2_train": [s2, s3, s4, s5],
        "fold2_val": [s0, s1],
    }
    for name, stems in folds.items():
        (folder / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))
    (folder / "train.txt").write_text("".join(f"{s}\n" for s in folds["fold0_train"]))
    (folder / "val.txt").write_text("".join(f"{s}\n" for s in folds["fold0_val"]))
    assert validate_dataset(root, workers=1) == []
    # s0 and s2 are both in train / val's train (fold 0) but apart in folds 1 and 2.
    images = root / "JPEGImages"
    (images / "s2.jpg").write_bytes((images / "s0.jpg").read_bytes())
    assert ("split-leakage", "JPEGImages/s0.jpg") in pairs(validate_dataset(root, workers=1))
