"""`segkit.weights_stage` end to end on tiny synthetic VOC folders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import voc_builder
from scipy import ndimage

from segkit import weights_stage
from segkit._io import sha256_file
from segkit.errors import DatasetError
from segkit.manifest import load_manifest, save_manifest
from segkit.voc import encode_palette_png, encode_uint16_png, read_mask
from segkit.weights import (
    class_stats,
    class_weights,
    objects_from_classes,
    objects_from_instances,
    weight_map,
)
from segkit.weights_stage import (
    WEIGHTS_VIZ_DIR,
    WeightsOptions,
    compute_weights,
    load_weights,
    read_weight_map,
    weight_map_path,
)

CLASSES = ("_background_", "cell", "debris")


def synthetic_masks(index: int, shape: tuple[int, int] = (40, 48)) -> tuple[np.ndarray, np.ndarray]:
    """Class and instance masks with touching and border objects; row 0 is ignore."""
    rng = np.random.default_rng(index)
    h, w = shape
    objects = np.zeros(shape, dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for i in range(1, 9):
        cy, cx = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2)
        objects[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(2, 7) ** 2] = i
    classes = np.where(objects > 0, np.where(objects % 3 == 0, 2, 1), 0).astype(np.uint8)
    classes[0] = 255
    objects[0] = 255
    return classes, objects


def make_voc(
    root: Path,
    count: int = 4,
    *,
    objects: bool = True,
    manifest: bool = False,
    splits: dict[str, Sequence[int]] | None = None,
    classes: Sequence[str] | None = CLASSES,
) -> list[str]:
    """A VOC folder with ``count`` images ``img0..``; returns the ids."""
    ids = [f"img{i}" for i in range(count)]
    masks = {sample_id: synthetic_masks(i) for i, sample_id in enumerate(ids)}
    voc_builder.write_voc(
        root,
        {sample_id: cls for sample_id, (cls, _) in masks.items()},
        object_masks={sample_id: obj for sample_id, (_, obj) in masks.items()} if objects else None,
        classes=classes,
        splits={name: [f"img{i}" for i in members] for name, members in (splits or {}).items()},
        manifest={"options": {}} if manifest else None,
    )
    return ids


def run(root: Path, **options) -> object:
    options.setdefault("workers", 1)
    return compute_weights(root, WeightsOptions(**options))


def masks_of(indices: Sequence[int]) -> list[np.ndarray]:
    return [synthetic_masks(i)[0] for i in indices]


# ----------------------------------------------------------------------------- stats


def test_statistics_and_weights_match_the_core(tmp_path: Path):
    make_voc(tmp_path)
    summary = run(tmp_path, scheme="inverse-frequency")
    expected = class_stats(masks_of(range(4)), 3)
    assert [row.pixels for row in summary.classes] == expected.pixels.tolist()
    assert [row.images for row in summary.classes] == expected.images.tolist()
    assert summary.ignored_pixels == expected.ignored == 4 * 48
    np.testing.assert_allclose(summary.class_weights, class_weights(expected, "inverse-frequency"))
    data = json.loads((tmp_path / "weights.json").read_text())
    assert data["class_weights"] == summary.class_weights
    assert data["split"] is None and data["num_images"] == 4
    assert [c["name"] for c in data["classes"]] == list(CLASSES)
    assert summary.maps_dir is None and not (tmp_path / "SegmentationWeights").exists()
    assert any("no split files" in note for note in summary.notes)
    assert any("weights.json only" in note for note in summary.notes)


def test_default_split_is_train(tmp_path: Path):
    make_voc(tmp_path, 5, splits={"train": [0, 2, 3], "val": [1, 4]})
    summary = run(tmp_path)
    assert summary.split == "train" and summary.num_images == 3
    expected = class_stats(masks_of([0, 2, 3]), 3)
    assert [row.pixels for row in summary.classes] == expected.pixels.tolist()
    val = run(tmp_path, split="val")
    assert val.split == "val" and val.num_images == 2
    everything = run(tmp_path, split="all")
    assert everything.split is None and everything.num_images == 5
    with pytest.raises(DatasetError, match=r"test\.txt: split file not found"):
        run(tmp_path, split="test")


def test_manifest_key_is_updated_and_others_kept(tmp_path: Path):
    make_voc(tmp_path, manifest=True)
    summary = run(tmp_path, border=True)
    assert summary.manifest_updated
    manifest = load_manifest(tmp_path)
    section = manifest["weights"]
    assert section["file"] == "weights.json"
    assert section["class_weights"] == summary.class_weights
    assert section["weight_maps"] == "SegmentationWeights"
    assert manifest["convert"] == {"options": {}}
    assert not any("weights.json only" in note for note in summary.notes)


def test_class_names_missing_use_ids(tmp_path: Path):
    make_voc(tmp_path, classes=None)
    summary = run(tmp_path)
    assert [row.name for row in summary.classes] == ["0", "1", "2"]
    assert any("no class names" in note for note in summary.notes)


def unnamed_voc_with_val_only_class(root: Path) -> None:
    """No class names; train masks use ids 0-2, id 3 occurs only in val."""
    make_voc(root, classes=None, splits={"train": [0, 1], "val": [2, 3]})
    cls, _ = synthetic_masks(3)
    cls[cls == 2] = 3
    (root / "SegmentationClass" / "img3.png").write_bytes(encode_palette_png(cls))


def test_class_names_missing_count_ids_of_every_split(tmp_path: Path):
    unnamed_voc_with_val_only_class(tmp_path)
    train = run(tmp_path)
    assert [row.name for row in train.classes] == ["0", "1", "2", "3"]
    assert any("whole dataset" in note for note in train.notes)
    # id 3 has no training pixels: the documented zero-pixel weight, not 0/inf/NaN
    assert train.classes[3].pixels == 0 and train.classes[3].raw_weight is None
    assert train.class_weights[3] == max(train.class_weights[:3])
    assert any("without pixels" in note and "3" in note for note in train.notes)
    assert len(load_weights(tmp_path).class_weights) == 4
    val = run(tmp_path, split="val")
    assert len(val.class_weights) == 4 and val.classes[3].pixels > 0
    everything = run(tmp_path, split="all")
    assert len(everything.class_weights) == 4


def test_class_names_missing_unreadable_mask_outside_split(tmp_path: Path):
    unnamed_voc_with_val_only_class(tmp_path)
    (tmp_path / "SegmentationClass" / "img3.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"1 of 4 mask\(s\) cannot be used.*img3\.png"):
        run(tmp_path)
    assert not (tmp_path / "weights.json").exists()


def test_class_names_given_ignore_masks_outside_split(tmp_path: Path):
    make_voc(tmp_path, splits={"train": [0, 1], "val": [2, 3]})
    (tmp_path / "SegmentationClass" / "img3.png").write_bytes(b"not a png")
    assert len(run(tmp_path).class_weights) == 3  # names fix the count; val is not read


def test_binary_dataset_reports_pos_weight(tmp_path: Path):
    make_voc(tmp_path, classes=None)
    for path in (tmp_path / "SegmentationClass").iterdir():
        mask = read_mask(path)
        path.write_bytes(encode_palette_png(np.where(mask == 2, 1, mask)))
    summary = run(tmp_path, scheme="pos-weight")
    negatives, positives = (row.pixels for row in summary.classes)
    assert summary.pos_weight == pytest.approx(negatives / positives)
    assert load_weights(tmp_path).pos_weight == pytest.approx(negatives / positives)


# ------------------------------------------------------------------------------ maps


def test_border_maps_equal_the_core(tmp_path: Path):
    ids = make_voc(tmp_path)
    summary = run(tmp_path, border=True, w0=8.0, sigma=3.0)
    assert summary.maps_written == 4 and summary.objects_from_instances == 4
    loaded = load_weights(tmp_path)
    assert set(loaded.maps) == set(ids)
    for i, sample_id in enumerate(ids):
        path = weight_map_path(tmp_path, sample_id)
        assert loaded.maps[sample_id] == path
        stored = np.load(path)
        assert stored.dtype == np.float32
        cls, obj = synthetic_masks(i)
        objects, ignore = objects_from_instances(obj)
        expected = weight_map(
            cls, np.array(summary.class_weights), objects, w0=8.0, sigma=3.0, ignore=ignore
        )
        np.testing.assert_array_equal(read_weight_map(path), expected)
        assert not stored[0].any()  # ignore row


def test_stored_maps_match_the_edt_oracle(tmp_path: Path):
    """Through the file, against one full-image EDT per object, at the issue's 1e-3."""
    make_voc(tmp_path, 3, objects=False)
    summary = run(tmp_path, border=True, border_on="all", w0=12.0, sigma=4.0)
    weights = np.array(summary.class_weights)
    assert load_weights(tmp_path).border["dtype"] == "float32"
    for i in range(3):
        cls, _ = synthetic_masks(i)
        objects = objects_from_classes(cls)
        ids = [v for v in np.unique(objects) if v > 0]
        assert len(ids) >= 3
        edt = np.sort([ndimage.distance_transform_edt(objects != v) for v in ids], axis=0)
        border = 12.0 * np.exp(-((edt[0] + edt[1]) ** 2) / (2 * 4.0**2))
        valid = cls != 255
        expected = np.where(valid, weights[np.where(valid, cls, 0)] + border, 0.0)
        path = weight_map_path(tmp_path, f"img{i}")
        assert np.load(path).dtype == np.float32
        stored = read_weight_map(path)
        assert expected.max() > 10  # float16 would be up to ~4e-3 off here
        np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-3)


def test_float16_maps_of_earlier_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_voc(tmp_path, 2)
    monkeypatch.setattr(weights_stage, "_MAP_DTYPE", "float16")
    old = run(tmp_path, border=True)
    monkeypatch.undo()
    assert np.load(weight_map_path(tmp_path, "img0")).dtype == np.float16
    loaded = load_weights(tmp_path)
    assert loaded.border["dtype"] == "float16" and set(loaded.maps) == {"img0", "img1"}
    cls, obj = synthetic_masks(0)
    objects, ignore = objects_from_instances(obj)
    expected = weight_map(cls, np.array(old.class_weights), objects, ignore=ignore)
    legacy = read_weight_map(loaded.maps["img0"])
    assert legacy.dtype == np.float32
    np.testing.assert_allclose(legacy, expected, rtol=1e-3, atol=1e-3)
    # a --border run rewrites them as float32; the masks are not decoded again
    rerun = run(tmp_path, border=True)
    assert rerun.maps_written == 2 and rerun.masks_reused == 2
    assert np.load(weight_map_path(tmp_path, "img0")).dtype == np.float32
    assert load_weights(tmp_path).border["dtype"] == "float32"


def test_float16_maps_go_on_a_run_without_border(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_voc(tmp_path, 2)
    monkeypatch.setattr(weights_stage, "_MAP_DTYPE", "float16")
    run(tmp_path, border=True)
    monkeypatch.undo()
    summary = run(tmp_path)
    assert summary.maps_removed == 2 and any("map format" in note for note in summary.notes)
    assert load_weights(tmp_path).maps == {}


def test_components_fallback_without_instance_masks(tmp_path: Path):
    make_voc(tmp_path, 2, objects=False)
    summary = run(tmp_path, border=True, border_on="all")
    assert summary.objects_from_components == 2 and summary.objects_from_instances == 0
    assert any("8-connected components" in note for note in summary.notes)
    cls, _ = synthetic_masks(0)
    expected = weight_map(
        cls, np.array(summary.class_weights), objects_from_classes(cls), border_on="all"
    )
    stored = read_weight_map(weight_map_path(tmp_path, "img0"))
    np.testing.assert_allclose(stored, expected, rtol=1e-3, atol=1e-3)


def test_sixteen_bit_instance_masks(tmp_path: Path):
    make_voc(tmp_path, 1, objects=False)
    cls = np.zeros((30, 30), dtype=np.uint8)
    obj = np.zeros((30, 30), dtype=np.uint16)
    # 300 one-pixel objects on a grid, so ids go beyond 255
    ids = np.arange(1, 301, dtype=np.uint16)
    obj.ravel()[::3][:300] = ids
    cls[obj > 0] = 1
    obj[29, 29] = 65535
    cls[29, 29] = 255
    (tmp_path / "SegmentationClass" / "img0.png").write_bytes(encode_palette_png(cls))
    (tmp_path / "SegmentationObject" / "img0.png").write_bytes(encode_uint16_png(obj))
    summary = run(tmp_path, border=True)
    assert summary.maps_written == 1
    stored = read_weight_map(weight_map_path(tmp_path, "img0"))
    objects, ignore = objects_from_instances(obj)
    assert objects.max() == 300 and ignore.sum() == 1
    expected = weight_map(cls, np.array(summary.class_weights), objects, ignore=ignore)
    np.testing.assert_allclose(stored, expected, rtol=1e-3, atol=1e-3)
    assert stored[29, 29] == 0.0 and stored.max() > 5


def test_viz_heat_maps(tmp_path: Path):
    make_voc(tmp_path, 2)
    summary = run(tmp_path, border=True, viz=True)
    assert summary.viz_written == 2
    with PIL.Image.open(tmp_path / WEIGHTS_VIZ_DIR / "img0.png") as image:
        assert image.mode == "RGB" and image.size == (48, 40)


def test_parallel_matches_serial(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_voc(a, 4)
    make_voc(b, 4)
    one = run(a, border=True, workers=1)
    two = run(b, border=True, workers=2)
    assert one.class_weights == two.class_weights
    for i in range(4):
        np.testing.assert_array_equal(
            np.load(weight_map_path(a, f"img{i}")), np.load(weight_map_path(b, f"img{i}"))
        )


def test_progress_reaches_the_total(tmp_path: Path):
    make_voc(tmp_path, 3)
    calls: list[tuple[int, int]] = []
    compute_weights(
        tmp_path, WeightsOptions(border=True, workers=1), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (6, 6)


# ----------------------------------------------------------------------- incremental


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}


def test_rerun_skips_unchanged_and_recomputes_changed(tmp_path: Path):
    make_voc(tmp_path, 4)
    first = run(tmp_path, border=True)
    assert first.maps_written == 4 and first.masks_reused == 0
    before = mtimes(tmp_path / "SegmentationWeights")
    second = run(tmp_path, border=True)
    assert second.maps_written == 0 and second.maps_unchanged == 4 and second.masks_reused == 4
    assert mtimes(tmp_path / "SegmentationWeights") == before
    # another sigma: every map changes, the masks are still not decoded again
    third = run(tmp_path, border=True, sigma=2.0)
    assert third.maps_written == 4 and third.masks_reused == 4
    # an edited mask changes the class weights, hence every map
    cls, _ = synthetic_masks(9)
    (tmp_path / "SegmentationClass" / "img1.png").write_bytes(encode_palette_png(cls))
    fourth = run(tmp_path, border=True, sigma=2.0)
    assert fourth.masks_reused == 3 and fourth.maps_written == 4
    assert fourth.class_weights != third.class_weights
    forced = run(tmp_path, border=True, sigma=2.0, force=True)
    assert forced.masks_reused == 0 and forced.maps_written == 4


def test_edited_instance_mask_rewrites_only_its_map(tmp_path: Path):
    make_voc(tmp_path, 3)
    run(tmp_path, border=True)
    _, obj = synthetic_masks(0)
    obj[obj == 1] = 0  # same class mask, fewer instances
    (tmp_path / "SegmentationObject" / "img0.png").write_bytes(encode_palette_png(obj))
    summary = run(tmp_path, border=True)
    assert summary.maps_written == 1 and summary.maps_unchanged == 2


def test_stale_maps_are_removed(tmp_path: Path):
    make_voc(tmp_path, 4, splits={"train": [0, 1, 2, 3]})
    run(tmp_path, border=True, viz=True)
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("img0\nimg1\n")
    summary = run(tmp_path, border=True, viz=True)
    assert summary.maps_removed == 2
    assert sorted(p.stem for p in (tmp_path / "SegmentationWeights").glob("*.npy")) == [
        "img0",
        "img1",
    ]
    assert sorted(p.stem for p in (tmp_path / WEIGHTS_VIZ_DIR).glob("*.png")) == ["img0", "img1"]


def test_run_without_border_keeps_maps_only_while_up_to_date(tmp_path: Path):
    make_voc(tmp_path, 3)
    run(tmp_path, border=True, sigma=3.0, viz=True)
    before = mtimes(tmp_path / "SegmentationWeights")
    table_only = run(tmp_path)
    assert table_only.maps_unchanged == 3 and table_only.maps_written == 0
    assert mtimes(tmp_path / "SegmentationWeights") == before
    assert set(load_weights(tmp_path).maps) == {"img0", "img1", "img2"}
    assert load_weights(tmp_path).border["sigma"] == 3.0
    assert len(list((tmp_path / WEIGHTS_VIZ_DIR).glob("*.png"))) == 3  # left alone without --viz
    # another scheme changes the class weights: the maps are stale and go
    other = run(tmp_path, scheme="enet")
    assert other.maps_removed == 3 and other.maps_dir is None
    assert any("were removed" in note for note in other.notes)
    assert load_weights(tmp_path).maps == {} and load_weights(tmp_path).border is None
    assert not list((tmp_path / "SegmentationWeights").glob("*.npy"))


def test_foreign_maps_folder_is_refused_without_force(tmp_path: Path):
    make_voc(tmp_path, 2)
    foreign = tmp_path / "SegmentationWeights"
    foreign.mkdir()
    (foreign / "img0.npy").write_bytes(b"not ours")
    with pytest.raises(DatasetError, match="not written by `segkit weights`"):
        run(tmp_path, border=True)
    assert (foreign / "img0.npy").read_bytes() == b"not ours"
    assert not (tmp_path / "weights.json").exists()
    # --force redoes segkit's outputs; it never replaces a file segkit did not write.
    with pytest.raises(DatasetError, match=r"img0\.npy; move them away"):
        run(tmp_path, border=True, force=True)
    assert (foreign / "img0.npy").read_bytes() == b"not ours"
    (foreign / "img0.npy").rename(tmp_path / "mine.npy")
    summary = run(tmp_path, border=True, force=True)
    assert summary.maps_written == 2


def test_unreadable_previous_weights_json_is_recomputed(tmp_path: Path):
    make_voc(tmp_path, 2)
    (tmp_path / "weights.json").write_text("{broken")
    summary = run(tmp_path)
    assert any("unreadable" in note for note in summary.notes)
    assert json.loads((tmp_path / "weights.json").read_text())["num_images"] == 2


def test_load_weights_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"weights\.json: not found"):
        load_weights(tmp_path)
    (tmp_path / "weights.json").write_text("[]")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_weights(tmp_path)
    (tmp_path / "weights.json").write_text('{"scheme": "enet"}')
    with pytest.raises(DatasetError, match="malformed"):
        load_weights(tmp_path)


def test_masks_over_the_pixel_limit_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_voc(tmp_path, 3, manifest=True)
    expected = run(tmp_path, border=True, force=True)
    # Counts the manifest already holds: then only the mask's header is read for its size.
    manifest = load_manifest(tmp_path)
    for entry in manifest["samples"]:
        path = tmp_path / entry["class_mask"]
        entry["class_mask_sha256"] = sha256_file(path)
        counts = np.bincount(read_mask(path).ravel())
        entry["class_pixels"] = {str(v): int(counts[v]) for v in np.flatnonzero(counts)}
    save_manifest(tmp_path, manifest)
    # 48×40 masks are now over twice Pillow's limit (DecompressionBombError).
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    reused = run(tmp_path)
    assert reused.masks_reused == 3 and reused.class_weights == expected.class_weights
    recomputed = run(tmp_path, border=True, force=True)
    assert recomputed.class_weights == expected.class_weights and recomputed.maps_written == 3
    assert PIL.Image.MAX_IMAGE_PIXELS == 100


def test_sixteen_bit_class_mask_is_refused(tmp_path: Path):
    make_voc(tmp_path, 2)
    cls, _ = synthetic_masks(0)
    (tmp_path / "SegmentationClass" / "img0.png").write_bytes(encode_uint16_png(cls))
    with pytest.raises(DatasetError, match=r"img0\.png: class mask has mode 'I;16'.*8-bit"):
        run(tmp_path)
