"""The split stage on tiny synthetic VOC folders: files, records, stability, groups, errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import voc_builder

from segkit.errors import DatasetError, OptionError
from segkit.manifest import load_manifest, save_manifest
from segkit.split_stage import plan_fractions, split_dataset
from segkit.voc import encode_uint16_png

SPLITS = "ImageSets/Segmentation"


def make_voc(
    root: Path,
    masks: Mapping[str, Iterable[int]],
    *,
    manifest: bool = False,
    classes: tuple[str, ...] = ("_background_", "cat", "dog", "bird", "fish"),
    same_image: Mapping[str, str] | None = None,
) -> Path:
    """A VOC folder: per stem a 24×24 noise JPEG and a mask with a stripe per class id.

    ``same_image`` maps a stem to another stem whose picture it reuses (a near-duplicate).
    """
    pictures: dict[str, np.ndarray] = {}
    class_masks: dict[str, np.ndarray] = {}
    for index, (stem, ids) in enumerate(sorted(masks.items())):
        rng = np.random.default_rng(1000 + index)
        source = (same_image or {}).get(stem)
        picture = pictures[source] if source in pictures else rng.integers(0, 256, (24, 24, 3))
        pictures[stem] = picture
        mask = np.zeros((24, 24), np.uint8)
        for row, class_id in enumerate(sorted(ids)):
            mask[row * 3 : row * 3 + 2, :] = class_id
        class_masks[stem] = mask
    return voc_builder.write_voc(
        root,
        class_masks,
        images=pictures,
        classes=classes,
        manifest={"kept": True} if manifest else None,
    )


def read_split(root: Path, name: str) -> list[str]:
    return (root / SPLITS / f"{name}.txt").read_text().splitlines()


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def simple_masks(n: int = 30) -> dict[str, set[int]]:
    masks = {f"img{i:03d}": {0, 1 + i % 3} for i in range(n)}
    for stem in ("img004", "img013", "img022")[: (n + 4) // 10]:
        masks[stem].add(4)  # a rare class, in exactly three images (of 30)
    return masks


def test_hand_made_voc_gets_voc_split_files_and_splits_json(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    summary = split_dataset(root, val=0.2, test=0.1, seed=0, workers=1)

    train, val, test = (read_split(root, n) for n in ("train", "val", "test"))
    assert sorted(train + val + test) == sorted(simple_masks())
    assert (len(train), len(val), len(test)) == (21, 6, 3)
    assert read_split(root, "trainval") == sorted(train + val)
    assert train == sorted(train)
    assert (root / SPLITS / "train.txt").read_text().endswith("\n")
    for part in (train, val, test):
        assert {"img004", "img013", "img022"} & set(part)  # the rare class is everywhere
    assert not (root / "segkit.json").exists()
    record = json.loads((root / SPLITS / "splits.json").read_text())
    assert record["params"]["seed"] == 0 and record["params"]["val"] == 0.2
    assert record["test"] == test
    assert summary.record == f"{SPLITS}/splits.json"
    assert [s.name for s in summary.splits] == ["train", "val", "test"]
    assert summary.uncovered == ()
    assert summary.class_names[4] == "fish"
    fish = {s.name: summary.pixel_share(s, 4) for s in summary.splits}
    assert sum(fish.values()) == pytest.approx(1.0)
    assert all(share > 0 for share in fish.values())


def test_manifest_records_split_and_keeps_other_sections(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks(), manifest=True)
    split_dataset(root, seed=3, workers=2)
    manifest = load_manifest(root)
    assert manifest["convert"] == {"kept": True}
    record = manifest["splits"]
    assert record["params"] == {
        "val": 0.2,
        "test": 0.1,
        "seed": 3,
        "folds": None,
        "grouping": "near-duplicates",
        "group_by": None,
        "groups_csv": None,
        "groups_csv_sha256": None,
    }
    assert record["train"] == read_split(root, "train")
    assert record["files"]["trainval"] == f"{SPLITS}/trainval.txt"
    assert len(record["masks_sha256"]) == 64
    assert not (root / SPLITS / "splits.json").exists()


def test_same_seed_same_data_gives_identical_bytes(tmp_path) -> None:
    a = make_voc(tmp_path / "a", simple_masks(), manifest=True)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    split_dataset(a, seed=5, workers=1)
    split_dataset(b, seed=5, workers=2)
    assert snapshot(a) == snapshot(b)
    again = split_dataset(a, seed=5, workers=1)
    assert again.written == ()
    assert snapshot(a) == snapshot(b)


def test_rerun_keeps_assignments_and_places_only_new_images(tmp_path) -> None:
    masks = simple_masks(30)
    root = make_voc(tmp_path / "voc", masks, manifest=True)
    split_dataset(root, seed=0, workers=1)
    before = {n: read_split(root, n) for n in ("train", "val", "test")}

    grown = {**masks, **{f"new{i:02d}": {0, 1 + i % 4} for i in range(10)}}
    make_voc(root, grown, manifest=True)
    summary = split_dataset(root, seed=99, workers=1)  # another seed: kept items do not move
    after = {n: read_split(root, n) for n in ("train", "val", "test")}
    for name in before:
        assert set(before[name]) <= set(after[name])
    assert (summary.kept, summary.placed) == (30, 10)
    assert [len(after[n]) for n in ("train", "val", "test")] == [28, 8, 4]

    reshuffled = split_dataset(root, seed=99, reshuffle=True, workers=1)
    assert reshuffled.kept == 0
    assert {n: read_split(root, n) for n in after} != after


def test_deleted_images_are_dropped_from_the_split(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks(), manifest=False)
    split_dataset(root, workers=1)
    gone = read_split(root, "val")[0]
    (root / "JPEGImages" / f"{gone}.jpg").unlink()
    (root / "SegmentationClass" / f"{gone}.png").unlink()
    summary = split_dataset(root, workers=1)
    assert summary.dropped == 1
    assert gone not in read_split(root, "trainval")
    assert any("dropped" in line for line in summary.warnings)


def test_image_without_mask_is_left_out_with_a_warning(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    PIL.Image.new("RGB", (8, 8)).save(root / "JPEGImages" / "orphan.jpg")
    summary = split_dataset(root, workers=1)
    assert summary.excluded == ("orphan",)
    assert "orphan" not in read_split(root, "trainval") + read_split(root, "test")
    assert any("orphan" in line for line in summary.warnings)


def test_no_test_split(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    split_dataset(root, test=0.1, workers=1)
    with pytest.raises(OptionError, match="existing split has a test set"):
        split_dataset(root, test=0, workers=1)
    summary = split_dataset(root, val=0.25, test=0, reshuffle=True, workers=1)
    assert not (root / SPLITS / "test.txt").exists()
    assert summary.removed == (f"{SPLITS}/test.txt",)
    assert len(read_split(root, "val")) in (7, 8)  # 0.25 × 30 = 7.5
    assert len(read_split(root, "val") + read_split(root, "train")) == 30


def test_group_by_regex_keeps_groups_together(tmp_path) -> None:
    masks = {f"patient{p}_slice{s}": {0, 1 + (p + s) % 4} for p in range(8) for s in range(4)}
    masks["scout"] = {0, 1}
    root = make_voc(tmp_path / "voc", masks)
    for seed in range(3):
        summary = split_dataset(
            root, group_by=r"^(patient\d+)_", seed=seed, reshuffle=True, workers=1
        )
        where: dict[str, set[str]] = {}
        for name in ("train", "val", "test"):
            for stem in read_split(root, name):
                where.setdefault(stem.split("_")[0], set()).add(name)
        assert all(len(splits) == 1 for splits in where.values())
        assert summary.groups == 9
        assert any("scout" in line and "own group" in line for line in summary.warnings)
    record = json.loads((root / SPLITS / "splits.json").read_text())
    assert record["params"]["grouping"] == "regex"
    assert ["patient0_slice0", "patient0_slice1", "patient0_slice2", "patient0_slice3"] in record[
        "groups"
    ]


def test_groups_csv(tmp_path) -> None:
    masks = simple_masks(12)
    root = make_voc(tmp_path / "voc", masks)
    csv_path = tmp_path / "groups.csv"
    rows = [f"{stem},video{i // 3}" for i, stem in enumerate(sorted(masks))]
    csv_path.write_text("stem,group\n" + "\n".join(rows) + "\nunknown_stem,video9\n")
    summary = split_dataset(root, groups_csv=csv_path, workers=1)
    assert summary.groups == 4
    for name in ("train", "val", "test"):
        videos = {i // 3 for i, s in enumerate(sorted(masks)) if s in read_split(root, name)}
        members = [s for i, s in enumerate(sorted(masks)) if i // 3 in videos]
        assert sorted(members) == read_split(root, name)
    assert any("unknown_stem" in line for line in summary.warnings)


def test_near_duplicates_stay_together(tmp_path) -> None:
    masks = simple_masks(20)
    twins = {"img001": "img000", "img002": "img000", "img011": "img010"}
    root = make_voc(tmp_path / "voc", masks, same_image=twins)
    for seed in range(4):
        summary = split_dataset(root, seed=seed, reshuffle=True, workers=1)
        split_of = {s: n for n in ("train", "val", "test") for s in read_split(root, n)}
        assert split_of["img000"] == split_of["img001"] == split_of["img002"]
        assert split_of["img010"] == split_of["img011"]
        assert summary.groups == 17


def test_folds(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks(30), manifest=True)
    summary = split_dataset(root, folds=3, test=0.1, seed=1, workers=1)
    assert [s.name for s in summary.splits] == ["fold0", "fold1", "fold2", "test"]
    test = read_split(root, "test")
    trainval = read_split(root, "trainval")
    assert len(test) == 3 and sorted(test + trainval) == sorted(simple_masks(30))
    vals = [read_split(root, f"fold{k}_val") for k in range(3)]
    assert sorted(s for v in vals for s in v) == trainval
    assert [len(v) for v in vals] == [9, 9, 9]
    for k in range(3):
        assert read_split(root, f"fold{k}_train") == sorted(set(trainval) - set(vals[k]))
        assert {"img004", "img013", "img022"} & set(vals[k])
    assert read_split(root, "train") == read_split(root, "fold0_train")
    assert read_split(root, "val") == vals[0]
    record = load_manifest(root)["splits"]
    assert record["folds"][2] == {"train": read_split(root, "fold2_train"), "val": vals[2]}
    assert record["params"]["folds"] == 3 and record["params"]["val"] is None

    with pytest.raises(OptionError, match="has 3 fold"):
        split_dataset(root, folds=5, workers=1)
    assert split_dataset(root, folds=3, test=0.1, seed=7, workers=1).written == ()

    plain = split_dataset(root, workers=1)  # back to train/val/test: the fold files go
    assert plain.kept == 30
    assert not list((root / SPLITS).glob("fold*"))
    assert read_split(root, "val") == vals[0]


def test_fold_count_must_fit_the_groups(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", {f"s{i}": {0} for i in range(4)})
    with pytest.raises(DatasetError, match="4 group"):
        split_dataset(root, folds=4, test=0.2, workers=1)


def test_manifest_pixel_counts_are_reused_only_for_unchanged_masks(tmp_path) -> None:
    masks = simple_masks(12)
    root = make_voc(tmp_path / "voc", masks, manifest=True)
    manifest = load_manifest(root)
    from segkit._io import sha256_file

    for entry in manifest["samples"]:
        entry["class_mask_sha256"] = sha256_file(root / entry["class_mask"])
        entry["class_pixels"] = {"0": 100, "3": 7}  # deliberately not what the mask holds
    manifest["samples"][0]["class_mask_sha256"] = "0" * 64  # as if edited after conversion
    save_manifest(root, manifest)
    summary = split_dataset(root, workers=1)
    pixels = {c: sum(s.pixels.get(c, 0) for s in summary.splits) for c in (0, 3)}
    assert pixels[3] == 7 * 11
    first = sorted(masks)[0]
    assert pixels[0] == 100 * 11 + 24 * 24 - 2 * 24 * (len(masks[first]) - 1)  # stripes 2 rows


def test_plan_fractions() -> None:
    assert plan_fractions(val=0.25, test=0.0, folds=None) == ({"train": 0.75, "val": 0.25}, 0.25)
    assert plan_fractions(val=None, test=0.2, folds=4)[0] == {
        "fold0": 0.2,
        "fold1": 0.2,
        "fold2": 0.2,
        "fold3": 0.2,
        "test": 0.2,
    }


BAD_OPTIONS = [
    ({"val": 0.0}, OptionError, r"--val must be in \(0, 1\)"),
    ({"val": 1.0}, OptionError, r"--val must be in \(0, 1\)"),
    ({"val": -0.1}, OptionError, r"--val must be in \(0, 1\)"),
    ({"test": 1.0}, OptionError, r"--test must be in \[0, 1\)"),
    ({"val": 0.6, "test": 0.4}, OptionError, "add up to 1; must be < 1"),
    ({"val": float("nan")}, OptionError, "--val must be"),
    ({"folds": 1}, OptionError, "--folds must be at least 2"),
    ({"folds": 3, "val": 0.2}, OptionError, "exclude each other"),
    ({"group_by": "x", "groups_csv": Path("g.csv")}, OptionError, "exclude each other"),
    ({"group_by": r"^img\d+"}, OptionError, "no capture group"),
    ({"group_by": r"^(img"}, OptionError, "not a valid regular expression"),
    ({"group_by": r"^(patient\d+)_"}, OptionError, "matches none of the 30 stems"),
    ({"groups_csv": Path("/nonexistent/groups.csv")}, OptionError, "file not found"),
    ({"workers": 0}, OptionError, "--workers must be at least 1"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_OPTIONS)
def test_bad_options_write_nothing(tmp_path, kwargs, error, match) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    before = snapshot(root)
    with pytest.raises(error, match=match):
        split_dataset(root, **kwargs)
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("img000,a\nimg001\n", r"groups.csv:2: expected 'stem,group'"),
        ("img000,a,b\n", r"groups.csv:1: expected"),
        ("img000,a\nimg000,b\n", "given groups 'a' and 'b'"),
        ("img000,a\n", "no group for 29 of 30 stems: img001"),
    ],
)
def test_bad_groups_csv_writes_nothing(tmp_path, content, match) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    csv_path = tmp_path / "groups.csv"
    csv_path.write_text(content)
    before = snapshot(root)
    with pytest.raises(OptionError, match=match):
        split_dataset(root, groups_csv=csv_path, workers=1)
    assert snapshot(root) == before


def test_bad_datasets_write_nothing(tmp_path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        split_dataset(tmp_path / "missing")

    empty = tmp_path / "empty"
    (empty / "JPEGImages").mkdir(parents=True)
    PIL.Image.new("RGB", (8, 8)).save(empty / "JPEGImages" / "a.jpg")
    with pytest.raises(DatasetError, match="no image has a class mask"):
        split_dataset(empty)

    few = make_voc(tmp_path / "few", {"a": {0}, "b": {0}})
    with pytest.raises(DatasetError, match=r"2 group.*3 splits"):
        split_dataset(few, workers=1)
    assert not (few / SPLITS).exists()

    broken = make_voc(tmp_path / "broken", simple_masks())
    (broken / "SegmentationClass" / "img003.png").write_bytes(b"not a png")
    PIL.Image.new("RGB", (24, 24), (128, 0, 0)).save(broken / "SegmentationClass" / "img007.png")
    before = snapshot(broken)
    with pytest.raises(DatasetError, match=r"2 file\(s\) cannot be read.*img003.*img007.*RGB"):
        split_dataset(broken, workers=2)
    assert snapshot(broken) == before


def test_inconsistent_previous_split_is_an_error(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    split_dataset(root, workers=1)
    val = read_split(root, "val")
    train_file = root / SPLITS / "train.txt"
    train_file.write_text(train_file.read_text() + val[0] + "\n")
    before = snapshot(root)
    with pytest.raises(DatasetError, match=f"'{val[0]}' is listed in both train and val"):
        split_dataset(root, workers=1)
    assert snapshot(root) == before
    split_dataset(root, reshuffle=True, workers=1)


def test_kept_split_without_room_for_a_new_test_set(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    split_dataset(root, test=0, workers=1)
    before = snapshot(root)
    with pytest.raises(DatasetError, match=r"'test' would be empty; re-run with --reshuffle"):
        split_dataset(root, test=0.1, workers=1)
    assert snapshot(root) == before


def test_changed_grouping_conflicts_are_kept_and_reported(tmp_path) -> None:
    masks = {f"patient{p}_slice{s}": {0, 1 + s % 3} for p in range(6) for s in range(3)}
    root = make_voc(tmp_path / "voc", masks)
    split_dataset(root, workers=1)  # ungrouped: patients end up spread over splits
    before = {n: read_split(root, n) for n in ("train", "val", "test")}
    summary = split_dataset(root, group_by=r"^(patient\d+)_", workers=1)
    assert {n: read_split(root, n) for n in before} == before
    assert summary.conflicts
    assert any("--reshuffle" in line for line in summary.warnings)


def test_sixteen_bit_images_are_grouped_by_content(tmp_path) -> None:
    # Microscopy images (values far above 255) all hashed to 0 through convert("L"),
    # so the default near-duplicate grouping made one group of them and split failed
    # with "1 group(s) of images cannot fill 3 splits".
    masks = {f"cell{i}": {0, 1 + i % 2} for i in range(6)}
    root = make_voc(tmp_path / "voc", masks)
    for index, stem in enumerate(sorted(masks)):
        (root / "JPEGImages" / f"{stem}.jpg").unlink()
        rng = np.random.default_rng(index)
        small = PIL.Image.fromarray(rng.random((3, 4)).astype(np.float32))
        smooth = np.asarray(small.resize((24, 24), PIL.Image.Resampling.BILINEAR))
        wide = PIL.Image.fromarray((2000 + smooth * 60000).astype(np.uint16))
        wide.save(root / "JPEGImages" / f"{stem}.{'tif' if index % 2 else 'png'}")
    summary = split_dataset(root, val=0.2, test=0.2, workers=1)
    assert summary.groups == 6
    assert sorted(read_split(root, "trainval") + read_split(root, "test")) == sorted(masks)


def test_files_over_the_pixel_limit_are_split(tmp_path, monkeypatch) -> None:
    root = make_voc(tmp_path / "voc", simple_masks(10))
    expected = split_dataset(tmp_path / "voc", workers=1).to_dict()["splits"]
    # 24×24 images and masks are now over twice Pillow's limit (DecompressionBombError).
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    summary = split_dataset(root, reshuffle=True, workers=1)
    assert summary.to_dict()["splits"] == expected
    assert PIL.Image.MAX_IMAGE_PIXELS == 100


def test_sixteen_bit_class_mask_is_refused_like_validate_does(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks())
    mask = np.zeros((24, 24), np.uint16)
    mask[:3] = 1
    (root / "SegmentationClass" / "img005.png").write_bytes(encode_uint16_png(mask))
    before = snapshot(root)
    with pytest.raises(DatasetError, match=r"img005\.png: class mask has mode 'I;16'.*8-bit"):
        split_dataset(root, workers=1)
    assert snapshot(root) == before


def test_progress_counts_samples(tmp_path) -> None:
    root = make_voc(tmp_path / "voc", simple_masks(60))
    calls: list[tuple[int, int]] = []
    split_dataset(root, workers=2, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (60, 60)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_ids_with_surrounding_spaces_are_refused_before_writing(tmp_path) -> None:
    masks = simple_masks(12)
    masks["img005 "] = masks.pop("img005")
    root = make_voc(tmp_path / "voc", masks)
    before = snapshot(root)
    with pytest.raises(DatasetError, match=r"1 id with leading or trailing spaces.*'img005 '"):
        split_dataset(root)
    assert snapshot(root) == before


def test_a_folder_in_place_of_a_split_file_is_an_error_before_anything_is_written(
    tmp_path,
) -> None:
    root = make_voc(tmp_path / "voc", simple_masks(12))
    (root / SPLITS / "val.txt").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"val\.txt: is a folder"):
        split_dataset(root)
    assert [p.name for p in (root / SPLITS).iterdir()] == ["val.txt"]


def test_coarse_groups_that_keep_a_split_off_target_are_reported(tmp_path) -> None:
    sizes = {"pA": 6, "pB": 3, "pC": 5}
    masks = {f"{p}_{i}": {0, 1} for p, n in sizes.items() for i in range(n)}
    root = make_voc(tmp_path / "voc", masks)
    summary = split_dataset(root, group_by=r"^(p[A-Z])_", workers=1)
    assert [len(read_split(root, name)) for name in ("train", "val", "test")] == [6, 5, 3]
    [warning] = [line for line in summary.warnings if "off target" in line]
    assert "train 6 (target 9.8)" in warning and "groups are never divided" in warning
    fine = make_voc(tmp_path / "fine", simple_masks(30))
    assert not any("off target" in w for w in split_dataset(fine, workers=1).warnings)


def test_ctrl_c_says_what_was_written_and_the_rerun_equals_a_clean_run(
    tmp_path, monkeypatch
) -> None:
    import segkit.split_stage as stage

    clean = make_voc(tmp_path / "clean", simple_masks(), manifest=True)
    stopped = tmp_path / "stopped"
    shutil.copytree(clean, stopped)
    split_dataset(clean, seed=5, workers=1)
    untouched = snapshot(stopped)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(stage, "_scan_all", ctrl_c)
        with pytest.raises(KeyboardInterrupt) as reading:
            split_dataset(stopped, seed=5, workers=1)
    assert reading.value.__notes__ == ["stopped while reading the dataset: nothing was written"]
    assert snapshot(stopped) == untouched

    calls = []
    real_write = stage._write_if_changed

    def second_file_interrupted(path, text):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(path, text)

    with monkeypatch.context() as patch:
        patch.setattr(stage, "_write_if_changed", second_file_interrupted)
        with pytest.raises(KeyboardInterrupt) as writing:
            split_dataset(stopped, seed=5, workers=1)
    assert writing.value.__notes__ == [
        "1 of 4 split file(s) in place"
    ]  # train, val, test, trainval
    split_dataset(stopped, seed=5, workers=1)
    assert snapshot(stopped) == snapshot(clean)
