"""`segkit convert` end to end through the real CLI, on small files built in tmp_path."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageCms
import PIL.ImageOps
import pytest
from helpers_convert import (
    INVERSE_ORIENTATION,
    add_sample,
    convert_args,
    encode,
    error_lines,
    exif_bytes,
    gradient,
    labelme_doc,
    manifest,
    mask_shape,
    read_array,
    run,
    sample_by_source,
    shape,
    temp_files,
    tree_hashes,
    tree_mtimes,
    voc_colormap_reference,
    write_json,
)

LABELS = "__ignore__\n_background_\nzeta\nalpha\n"  # file order, not sorted: zeta 1, alpha 2
ZETA, ALPHA = 1, 2


@pytest.fixture
def labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text(LABELS, encoding="utf-8")
    return path


def convert_ok(source: Path, output: Path, *extra: str | Path) -> dict:
    """Run convert with --json; assert success; return the JSON summary."""
    result = run(*convert_args(source, output, "--json", *extra))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- shapes, classes, instances, palettes --------------------------------------------


def test_every_shape_type_converts_with_file_order_ids(tmp_path: Path, labels_file: Path) -> None:
    shapes = [
        shape("zeta", "polygon", [[2, 2], [20, 2], [20, 20], [2, 20]]),
        shape("alpha", "rectangle", [[40, 12], [30, 2]]),  # corners in any order
        shape("zeta", "circle", [[50, 10], [50, 15]]),
        shape("alpha", "line", [[2, 30], [20, 30]]),
        shape("zeta", "linestrip", [[2, 42], [10, 46], [20, 42]]),
        shape("alpha", "point", [[30, 30]]),
        shape("zeta", "oriented_rectangle", [[40, 25], [50, 25], [50, 35], [40, 35]]),
        mask_shape("alpha", [[54, 38], [61, 45]], np.ones((8, 8))),
    ]
    add_sample(tmp_path / "in", "scene", shapes, size=(48, 64))
    out = tmp_path / "out"
    summary = convert_ok(tmp_path / "in", out, "--labels", labels_file)

    assert summary["shape_types"] == {s["shape_type"]: 1 for s in shapes}
    cls = read_array(out / "SegmentationClass/scene.png")
    obj = read_array(out / "SegmentationObject/scene.png")
    assert cls.shape == obj.shape == (48, 64)
    probes = [(10, 10), (7, 35), (10, 50), (30, 10), (46, 10), (30, 30), (30, 45), (41, 57)]
    for number, ((row, col), source) in enumerate(zip(probes, shapes, strict=True), start=1):
        expected = ZETA if source["label"] == "zeta" else ALPHA
        assert cls[row, col] == expected, source["shape_type"]
        assert obj[row, col] == number, source["shape_type"]
    assert (cls[38:46, 54:62] == ALPHA).all() and (cls[38:46, 53] == 0).all()
    assert cls[20, 62] == 0 and obj[20, 62] == 0
    assert summary["class_pixels"]["_background_"] == int((cls == 0).sum())


def test_group_id_joins_instances_per_label(tmp_path: Path, labels_file: Path) -> None:
    shapes = [
        shape("zeta", "rectangle", [[1, 1], [5, 5]], group_id=7),
        shape("zeta", "rectangle", [[20, 1], [25, 5]], group_id=7),
        shape("alpha", "rectangle", [[10, 1], [15, 5]], group_id=7),  # other label: own id
        shape("zeta", "rectangle", [[1, 10], [5, 15]]),
        shape("zeta", "rectangle", [[10, 10], [15, 15]]),  # no group_id: separate
    ]
    add_sample(tmp_path / "in", "g", shapes)
    convert_ok(tmp_path / "in", tmp_path / "out", "--labels", labels_file)
    obj = read_array(tmp_path / "out/SegmentationObject/g.png")
    assert [obj[3, 3], obj[3, 22], obj[3, 12], obj[12, 3], obj[12, 12]] == [1, 1, 2, 3, 4]
    sample = sample_by_source(tmp_path / "out", "g.json")
    assert sample["instances"] == 4 and sample["shapes"] == 5


@pytest.mark.parametrize("small_last", [True, False])
def test_later_shapes_paint_over_earlier(
    tmp_path: Path, labels_file: Path, small_last: bool
) -> None:
    big = shape("zeta", "rectangle", [[2, 2], [20, 20]])
    small = shape("alpha", "polygon", [[8, 8], [14, 8], [14, 14], [8, 14]])
    add_sample(tmp_path / "in", "p", [big, small] if small_last else [small, big])
    convert_ok(tmp_path / "in", tmp_path / "out", "--labels", labels_file)
    cls = read_array(tmp_path / "out/SegmentationClass/p.png")
    obj = read_array(tmp_path / "out/SegmentationObject/p.png")
    assert cls[11, 11] == (ALPHA if small_last else ZETA)
    assert obj[11, 11] == 2 and obj[3, 3] == (1 if small_last else 2)


def test_ignore_and_background_labels(tmp_path: Path, labels_file: Path) -> None:
    shapes = [
        shape("zeta", "rectangle", [[0, 0], [31, 23]]),
        shape("__ignore__", "rectangle", [[2, 2], [8, 8]]),
        shape("_background_", "rectangle", [[12, 2], [18, 8]]),
    ]
    add_sample(tmp_path / "in", "ib", shapes)
    convert_ok(tmp_path / "in", tmp_path / "out", "--labels", labels_file)
    cls = read_array(tmp_path / "out/SegmentationClass/ib.png")
    obj = read_array(tmp_path / "out/SegmentationObject/ib.png")
    assert (cls[5, 5], obj[5, 5]) == (255, 255)  # ignore in both masks
    assert (cls[5, 15], obj[5, 15]) == (0, 0)  # background has no instance
    assert (cls[20, 20], obj[20, 20]) == (ZETA, 1)


def test_masks_are_voc_palette_pngs(tmp_path: Path, labels_file: Path) -> None:
    add_sample(tmp_path / "in", "x")
    convert_ok(tmp_path / "in", tmp_path / "out", "--labels", "zeta,alpha,cat")
    reference = voc_colormap_reference().reshape(-1).tolist()
    assert reference[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    assert reference[-3:] == [224, 224, 192]
    for folder in ("SegmentationClass", "SegmentationObject"):
        with PIL.Image.open(tmp_path / "out" / folder / "x.png") as image:
            assert image.mode == "P"
            assert image.getpalette() == reference
    assert read_array(tmp_path / "out/SegmentationClass/x.png")[5, 5] == 3  # cat


def _dots(count: int, label: str = "zeta") -> list[dict]:
    """``count`` one-pixel rectangles on a 2-pixel grid, 30 per row."""
    return [
        shape(label, "rectangle", [[2 * (i % 30), 2 * (i // 30)], [2 * (i % 30), 2 * (i // 30)]])
        for i in range(count)
    ]


@pytest.mark.parametrize(("objects", "bits"), [(254, 8), (255, 16), (300, 16)])
def test_instance_png_widens_to_16_bit_past_254(tmp_path: Path, objects: int, bits: int) -> None:
    # One-pixel objects, then an ignore shape: labelme numbers it too, but it paints the
    # ignore value, not an id, so it neither counts as an instance nor widens the PNG.
    shapes = _dots(objects)
    shapes.append(shape("__ignore__", "rectangle", [[62, 22], [63, 23]]))
    add_sample(tmp_path / "in", "many", shapes, size=(24, 64))
    convert_ok(tmp_path / "in", tmp_path / "out", "--labels", "zeta")
    with PIL.Image.open(tmp_path / "out/SegmentationObject/many.png") as image:
        assert image.mode == ("P" if bits == 8 else "I;16")
        obj = np.asarray(image)
    last = objects - 1
    assert obj[0, 0] == 1 and obj[2 * (last // 30), 2 * (last % 30)] == objects
    assert obj[1, 1] == 0
    assert obj[23, 63] == (255 if bits == 8 else 65535)
    assert len(np.unique(obj)) == objects + 2  # every object, background, ignore
    sample = sample_by_source(tmp_path / "out", "many.json")
    assert sample["object_mask_bits"] == bits and sample["instances"] == objects
    with PIL.Image.open(tmp_path / "out/SegmentationClass/many.png") as image:
        assert image.mode == "P"


@pytest.mark.parametrize(("first", "bits"), [(False, 8), (True, 16)])
def test_background_shapes_are_not_instances(tmp_path: Path, first: bool, bits: int) -> None:
    # 254 objects and one background shape, which labelme numbers too (ids stay
    # labelme's). Last, it leaves the objects 1..254: 8 bits hold them. First, it moves
    # them to 2..255, and 255 is the 8-bit ignore value. Either way: 254 instances.
    background = shape("_background_", "rectangle", [[62, 22], [63, 23]])
    dots = _dots(254)
    shapes = [background, *dots] if first else [*dots, background]
    add_sample(tmp_path / "in", "many", shapes, size=(24, 64))
    convert_ok(tmp_path / "in", tmp_path / "out", "--labels", "zeta")
    obj = read_array(tmp_path / "out/SegmentationObject/many.png")
    assert obj.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert obj[0, 0] == 1 + first and obj.max() == 254 + first
    assert obj[23, 63] == 0
    sample = sample_by_source(tmp_path / "out", "many.json")
    assert sample["object_mask_bits"] == bits and sample["instances"] == 254


def test_manifest_and_label_files(tmp_path: Path, labels_file: Path) -> None:
    add_sample(tmp_path / "in", "x", [shape("zeta", "rectangle", [[2, 2], [9, 9]])])
    add_sample(tmp_path / "in", "y", [shape("alpha", "point", [[5, 5]])])
    out = tmp_path / "out"
    convert_ok(tmp_path / "in", out, "--labels", labels_file, "--viz")
    assert (out / "labels.txt").read_text(encoding="utf-8") == LABELS
    assert (out / "class_names.txt").read_text(encoding="utf-8") == "_background_\nzeta\nalpha\n"
    data = manifest(out)
    assert {"schema_version", "segkit_version", "classes", "ignore_index", "palette"} <= set(data)
    assert data["classes"] == ["_background_", "zeta", "alpha"]
    assert data["ignore_index"] == 255 and data["palette"] == "voc"
    assert data["colors"]["_background_"] == [0, 0, 0]
    assert list(data["colors"].values())[1:3] == [[128, 0, 0], [0, 128, 0]]
    assert {"segkit_version", "options", "options_fingerprint"} <= set(data["convert"])
    assert data["convert"]["options"]["labels"]["alpha"] == ALPHA
    assert [s["id"] for s in data["samples"]] == ["x", "y"]
    sample = data["samples"][0]
    keys = {
        "id",
        "image",
        "class_mask",
        "object_mask",
        "visualization",
        "height",
        "width",
        "source",
        "source_sha256",
        "image_source",
        "image_source_sha256",
        "image_sha256",
        "class_mask_sha256",
        "object_mask_sha256",
        "exif_rotated",
        "image_reencoded",
        "class_pixels",
        "instances",
        "object_mask_bits",
    }
    assert keys <= set(sample)
    assert (sample["height"], sample["width"]) == (24, 32)
    assert sample["image_source"] == "x.jpg" and sample["source"] == "x.json"
    for key in ("image", "class_mask", "object_mask", "visualization"):
        assert (out / sample[key]).is_file()
    assert sample["class_pixels"] == {"0": 24 * 32 - 64, "1": 64}


# --- images ---------------------------------------------------------------------------


def test_jpeg_bytes_copied_unchanged(tmp_path: Path) -> None:
    json_path = add_sample(tmp_path / "in", "photo")
    convert_ok(tmp_path / "in", tmp_path / "out")
    source = json_path.with_suffix(".jpg").read_bytes()
    assert (tmp_path / "out/JPEGImages/photo.jpg").read_bytes() == source
    assert sample_by_source(tmp_path / "out", "photo.json")["image_reencoded"] is False


def _oriented_folder(folder: Path) -> dict[str, int]:
    """One JSON per EXIF orientation 2..8 (JPEG) plus a PNG with an eXIf chunk.

    Each annotation is drawn in the oriented frame: a rectangle on its top-left corner.
    """
    names = {}
    oriented = gradient(40, 24)
    for orientation in range(2, 9):
        stored = oriented
        for op in INVERSE_ORIENTATION[orientation]:
            stored = stored.transpose(op)
        for fmt, suffix in (("JPEG", ".jpg"), ("PNG", ".png")):
            if fmt == "PNG" and orientation not in (3, 6):
                continue
            name = f"o{orientation}{suffix[1:]}"
            params = {"quality": 95} if fmt == "JPEG" else {}
            data = encode(stored, fmt, exif=exif_bytes(orientation), **params)
            (folder / f"{name}{suffix}").write_bytes(data)
            doc = labelme_doc(
                [shape("zeta", "rectangle", [[0, 0], [7, 5]])],
                image_path=f"{name}{suffix}",
                size=(24, 40),
            )
            write_json(folder / f"{name}.json", doc)
            names[name] = orientation
    return names


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_exif_orientations_2_to_8(tmp_path: Path, image_format: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    names = _oriented_folder(folder)
    out = tmp_path / "out"
    summary = convert_ok(folder, out, "--labels", "zeta", "--image-format", image_format)
    assert summary["converted"] == len(names)
    for name in names:
        source = next(folder.glob(f"{name}.*[gG]"))
        with PIL.Image.open(source) as opened:
            expected = np.asarray(PIL.ImageOps.exif_transpose(opened).convert("RGB"))
        sample = sample_by_source(out, f"{name}.json")
        assert sample["exif_rotated"] is True and sample["image_reencoded"] is True
        written = out / sample["image"]
        assert written.suffix == f".{image_format}"
        with PIL.Image.open(written) as image:
            assert image.getexif().get(0x0112, 1) == 1  # no tag left to rotate it twice
            actual = np.asarray(image.convert("RGB"))
        assert actual.shape == expected.shape == (24, 40, 3)
        diff = np.abs(actual.astype(int) - expected.astype(int))
        if image_format == "png":
            assert diff.max() == 0, name
        else:
            assert diff.mean() < 2.0 and diff.max() < 24, name
        cls = read_array(out / sample["class_mask"])
        assert cls.shape == (24, 40)
        assert (cls[0:6, 0:8] == 1).all() and cls.sum() == 6 * 8


def test_rotated_jpeg_keeps_its_colour_profile(tmp_path: Path) -> None:
    profile = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile("sRGB")).tobytes()
    data = encode(gradient(20, 12), "JPEG", exif=exif_bytes(6), icc_profile=profile)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/p.jpg").write_bytes(data)
    write_json(tmp_path / "in/p.json", labelme_doc([], image_path="p.jpg", size=(20, 12)))
    convert_ok(tmp_path / "in", tmp_path / "out")
    with PIL.Image.open(tmp_path / "out/JPEGImages/p.jpg") as image:
        assert image.size == (12, 20) and image.info.get("icc_profile") == profile


def test_declared_size_in_stored_frame_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "r.jpg").write_bytes(encode(gradient(40, 24), "JPEG", exif=exif_bytes(6)))
    write_json(folder / "r.json", labelme_doc([], image_path="r.jpg", size=(24, 40)))
    result = run(*convert_args(folder, tmp_path / "out"))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "r.json" in line and "imageHeight is 24 but" in line and "EXIF" in line


def test_image_data_used_as_stored(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    # Embedded JPEG with an orientation tag: labelme shows imageData unrotated.
    jpeg = encode(gradient(40, 24), "JPEG", exif=exif_bytes(6), quality=95)
    doc = labelme_doc(
        [shape("zeta", "rectangle", [[0, 0], [7, 5]])],
        image_path="missing.jpg",
        size=(24, 40),
        image_data=jpeg,
    )
    write_json(folder / "emb_jpeg.json", doc)
    png_picture = gradient(20, 10)
    doc = labelme_doc([], image_path=None, size=(10, 20), image_data=encode(png_picture, "PNG"))
    write_json(folder / "emb_png.json", doc)
    # imageData wins over an existing imagePath file.
    gradient(64, 64).save(folder / "other.png")
    doc = labelme_doc(
        [], image_path="other.png", size=(10, 20), image_data=encode(png_picture, "PNG")
    )
    write_json(folder / "emb_both.json", doc)
    out = tmp_path / "out"
    convert_ok(folder, out, "--labels", "zeta", "--image-format", "png")

    sample = sample_by_source(out, "emb_jpeg.json")
    assert sample["image_source"] == "imageData" and sample["exif_rotated"] is False
    assert (sample["height"], sample["width"]) == (24, 40)
    with PIL.Image.open(out / sample["image"]) as image:
        assert image.size == (40, 24) and image.getexif().get(0x0112, 1) == 1
    cls = read_array(out / sample["class_mask"])
    assert (cls[0:6, 0:8] == 1).all()
    for name in ("emb_png", "emb_both"):
        np.testing.assert_array_equal(
            read_array(out / f"JPEGImages/{name}.png"), np.asarray(png_picture)
        )


def test_embedded_jpeg_with_orientation_tag_is_not_copied(tmp_path: Path) -> None:
    # Copying would hand EXIF-aware loaders a tag that turns the image off its masks.
    jpeg = encode(gradient(40, 24), "JPEG", exif=exif_bytes(6), quality=95)
    write_json(
        tmp_path / "in/e.json", labelme_doc([], image_path="e.jpg", size=(24, 40), image_data=jpeg)
    )
    convert_ok(tmp_path / "in", tmp_path / "out")
    written = tmp_path / "out/JPEGImages/e.jpg"
    assert written.read_bytes() != jpeg
    with PIL.Image.open(written) as image:
        assert image.size == (40, 24) and image.getexif().get(0x0112, 1) == 1


def test_image_path_with_backslashes_and_parent_folder(tmp_path: Path) -> None:
    picture = gradient(20, 10)
    (tmp_path / "in/images").mkdir(parents=True)
    picture.save(tmp_path / "in/images/pic.png")
    doc = labelme_doc(
        [shape("zeta", "point", [[5, 5]])], image_path="..\\..\\images\\pic.png", size=(10, 20)
    )
    write_json(tmp_path / "in/ann/day1/pic.json", doc)
    out = tmp_path / "out"
    convert_ok(tmp_path / "in", out, "--image-format", "png")
    sample = sample_by_source(out, "ann/day1/pic.json")
    assert sample["id"] == "ann__day1__pic"
    assert sample["image_source"] == "../../images/pic.png"
    np.testing.assert_array_equal(read_array(out / sample["image"]), np.asarray(picture))


def _write_image(folder: Path, name: str, image: PIL.Image.Image, fmt: str, suffix: str) -> Path:
    image.save(folder / f"{name}{suffix}", format=fmt)
    doc = labelme_doc(
        [shape("zeta", "rectangle", [[1, 1], [4, 4]])],
        image_path=f"{name}{suffix}",
        size=(image.height, image.width),
    )
    write_json(folder / f"{name}.json", doc)
    return folder / f"{name}{suffix}"


def _formats_folder(folder: Path) -> dict[str, Path]:
    """One image of each kind next to its JSON; returns name → image file."""
    folder.mkdir(parents=True)
    rgba = gradient(20, 12).convert("RGBA")
    rgba.putalpha(PIL.Image.fromarray(np.tile(np.arange(20, dtype=np.uint8) * 12, (12, 1))))
    palette = gradient(20, 12).convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=16)
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    sixteen = PIL.Image.fromarray((np.arange(240).reshape(12, 20) * 271 + 3).astype(np.uint16))
    floats = PIL.Image.fromarray(np.linspace(-1.5, 2.25, 240, dtype=np.float32).reshape(12, 20))
    images = {
        "png": (gradient(20, 12), "PNG", ".png"),
        "bmp": (gradient(20, 12), "BMP", ".bmp"),
        "gray": (gradient(20, 12, "L"), "JPEG", ".jpg"),
        "palette": (palette, "PNG", ".png"),
        "palette_alpha": (transparent, "PNG", ".png"),
        "rgba": (rgba, "PNG", ".png"),
        "tiff16": (sixteen, "TIFF", ".tif"),
        "png16": (sixteen, "PNG", ".png"),
        "float": (floats, "TIFF", ".tiff"),
    }
    return {
        name: _write_image(folder, name, image, fmt, suffix)
        for name, (image, fmt, suffix) in images.items()
    }


@pytest.mark.parametrize("image_format", ["jpg", "png"])
def test_image_formats(tmp_path: Path, image_format: str) -> None:
    images = _formats_folder(tmp_path / "in")
    out = tmp_path / "out"
    convert_ok(tmp_path / "in", out, "--image-format", image_format, "--labels", "zeta")
    expected_suffix = {
        "rgba": ".png",  # alpha needs PNG whatever the format
        "palette_alpha": ".png",
        "tiff16": ".png",  # 16-bit: PNG holds every value
        "png16": ".png",
        "float": ".tif",  # fractional floats: only TIFF holds them exactly
    }
    for name, source_file in images.items():
        with PIL.Image.open(source_file) as source:
            source.load()
        sample = sample_by_source(out, f"{name}.json")
        written = out / sample["image"]
        assert written.suffix == expected_suffix.get(name, f".{image_format}"), name
        assert list((out / "JPEGImages").glob(f"{name}.*")) == [written]
        assert read_array(out / sample["class_mask"])[2, 2] == 1, name
        with PIL.Image.open(written) as image:
            actual = np.asarray(image)
            mode = image.mode
        if name in ("tiff16", "png16"):
            assert mode == "I;16"
            np.testing.assert_array_equal(actual, np.asarray(source))
        elif name == "float":
            np.testing.assert_array_equal(actual, np.asarray(source))
        elif name in ("rgba", "palette_alpha"):
            np.testing.assert_array_equal(actual, np.asarray(source.convert("RGBA")))
        else:
            want = np.asarray(source.convert("L" if name == "gray" else "RGB")).astype(int)
            if image_format == "png":
                np.testing.assert_array_equal(actual, want)
            else:  # JPEG: close (a 16-colour palette image has sharp edges)
                assert np.abs(actual.astype(int) - want).mean() < 6, name
    # A later run with the other format replaces, never duplicates, the images.
    other = "png" if image_format == "jpg" else "jpg"
    convert_ok(tmp_path / "in", out, "--image-format", other, "--labels", "zeta")
    assert len(list((out / "JPEGImages").iterdir())) == len(images)


def test_tiff_orientation_follows_labelme(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = gradient(20, 12)
    rgb.save(folder / "rgb.tif", tiffinfo={0x0112: 6})
    sixteen = PIL.Image.fromarray((np.arange(240).reshape(12, 20) * 200).astype(np.uint16))
    sixteen.save(folder / "deep.tif", tiffinfo={0x0112: 6})
    # labelme shows the 8-bit TIFF turned (Pillow turns it) and the 16-bit one as stored.
    write_json(folder / "rgb.json", labelme_doc([], image_path="rgb.tif", size=(20, 12)))
    write_json(folder / "deep.json", labelme_doc([], image_path="deep.tif", size=(12, 20)))
    out = tmp_path / "out"
    convert_ok(folder, out, "--image-format", "png")
    np.testing.assert_array_equal(
        read_array(out / "JPEGImages/rgb.png"),
        np.asarray(rgb.transpose(PIL.Image.Transpose.ROTATE_270)),
    )
    np.testing.assert_array_equal(read_array(out / "JPEGImages/deep.png"), np.asarray(sixteen))


# --- labels ---------------------------------------------------------------------------


def _two_label_folder(folder: Path) -> None:
    add_sample(folder, "a", [shape("zeta", "rectangle", [[0, 0], [31, 23]])])
    add_sample(
        folder,
        "b",
        [shape("zeta", "rectangle", [[0, 0], [31, 23]]), shape("dog", "point", [[10, 10]])],
    )


def test_labels_file_and_comma_list_agree(tmp_path: Path, labels_file: Path) -> None:
    add_sample(tmp_path / "in", "x", [shape("alpha", "point", [[5, 5]])])
    convert_ok(tmp_path / "in", tmp_path / "o1", "--labels", labels_file)
    convert_ok(tmp_path / "in", tmp_path / "o2", "--labels", "zeta, alpha")
    assert (tmp_path / "o2/labels.txt").read_text(encoding="utf-8") == LABELS
    for folder in ("SegmentationClass", "SegmentationObject"):
        assert (tmp_path / "o1" / folder / "x.png").read_bytes() == (
            tmp_path / "o2" / folder / "x.png"
        ).read_bytes()
    bom = tmp_path / "bom.txt"
    bom.write_bytes(LABELS.replace("\n", "\r\n").encode("utf-8-sig"))  # Windows Notepad
    convert_ok(tmp_path / "in", tmp_path / "o3", "--labels", bom)
    assert manifest(tmp_path / "o3")["classes"] == ["_background_", "zeta", "alpha"]


def test_missing_labels_file_is_an_option_error(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "x")
    result = run(*convert_args(tmp_path / "in", tmp_path / "out", "--labels", "nope/labels.txt"))
    assert result.exit_code == 2
    assert "file not found" in result.stderr and not (tmp_path / "out").exists()


def test_discovered_labels_are_sorted_then_stable(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "one", [shape("zebra", "point", [[5, 5]]), shape("cat", "point", [[20, 5]])])
    summary = convert_ok(folder, out)
    assert summary["classes"] == ["_background_", "cat", "zebra"]
    assert (out / "labels.txt").read_text(encoding="utf-8").splitlines() == [
        "__ignore__",
        "_background_",
        "cat",
        "zebra",
    ]
    before = tree_mtimes(out / "SegmentationClass")
    # A new label that sorts first is appended: earlier ids never move.
    add_sample(folder, "two", [shape("aardvark", "point", [[5, 5]])])
    summary = convert_ok(folder, out)
    assert summary["classes"] == ["_background_", "cat", "zebra", "aardvark"]
    assert summary["converted"] == 1 and summary["up_to_date"] == 1
    assert tree_mtimes(out / "SegmentationClass")["one.png"] == before["one.png"]
    assert read_array(out / "SegmentationClass/two.png")[5, 5] == 3
    assert read_array(out / "SegmentationClass/one.png")[5, 5] == 2  # zebra still 2


def test_deleted_labels_txt_falls_back_to_the_manifest(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "one", [shape("zebra", "point", [[5, 5]])])
    convert_ok(folder, out)
    add_sample(folder, "two", [shape("aardvark", "point", [[5, 5]])])
    convert_ok(folder, out)  # aardvark appended after zebra
    (out / "labels.txt").unlink()
    summary = convert_ok(folder, out)
    assert summary["classes"] == ["_background_", "zebra", "aardvark"]
    assert (summary["converted"], summary["up_to_date"]) == (0, 2)


def test_unknown_label_fails_before_writing(tmp_path: Path, labels_file: Path) -> None:
    _two_label_folder(tmp_path / "in")
    add_sample(tmp_path / "in/sub", "c", [shape("dog", "point", [[5, 5]])])
    result = run(*convert_args(tmp_path / "in", tmp_path / "out", "--labels", labels_file))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "'dog' (b.json, sub/c.json)" in line and "--unknown-label" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("policy", "value"), [("ignore", 255), ("background", 0), ("skip", ZETA)])
def test_unknown_label_policies(tmp_path: Path, labels_file: Path, policy: str, value: int) -> None:
    _two_label_folder(tmp_path / "in")
    convert_ok(
        tmp_path / "in", tmp_path / "out", "--labels", labels_file, "--unknown-label", policy
    )
    cls = read_array(tmp_path / "out/SegmentationClass/b.png")
    assert cls[10, 10] == value  # skip: the dog is dropped, the zeta under it shows
    assert cls[20, 30] == ZETA


def test_bad_unknown_label_value(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "x")
    result = run(*convert_args(tmp_path / "in", tmp_path / "out", "--unknown-label", "drop"))
    assert result.exit_code == 2 and "--unknown-label" in result.stderr
    assert "'drop' is not one of 'error', 'ignore', 'background', 'skip'" in result.stderr


def test_map_renames_and_merges(tmp_path: Path, labels_file: Path) -> None:
    shapes = [
        shape("kitty", "rectangle", [[0, 0], [5, 5]]),
        shape("Tiger", "rectangle", [[10, 0], [15, 5]]),
        shape("blur", "rectangle", [[20, 0], [25, 5]]),
    ]
    add_sample(tmp_path / "in", "m", shapes)
    args = ["--map", "kitty=zeta", "--map", "Tiger=zeta", "--map", "blur=__ignore__"]
    convert_ok(tmp_path / "in", tmp_path / "out", "--labels", labels_file, *args)
    cls = read_array(tmp_path / "out/SegmentationClass/m.png")
    assert [cls[2, 2], cls[2, 12], cls[2, 22]] == [ZETA, ZETA, 255]
    result = run(*convert_args(tmp_path / "in", tmp_path / "o2", "--map", "kitty"))
    assert result.exit_code == 2 and "expected OLD=NEW" in result.stderr


def test_path_like_and_unicode_labels_never_become_paths(tmp_path: Path) -> None:
    labels = ["../../escape", "a/b", "/etc/passwd", "ünï 猫", "[bold]x[/]", ".."]
    shapes = [shape(label, "point", [[6 + 12 * i, 5]]) for i, label in enumerate(labels)]
    add_sample(tmp_path / "in", "evil", shapes, size=(24, 80))
    before = tree_hashes(tmp_path)
    out = tmp_path / "out"
    result = run(*convert_args(tmp_path / "in", out, "--viz"))
    assert result.exit_code == 0, result.output
    assert "[bold]x[/]" in result.stdout  # printed literally, not read as Rich markup
    after = tree_hashes(tmp_path)
    created = set(after) - set(before)
    assert all(path.startswith("out/") for path in created), created
    assert {k: v for k, v in after.items() if k in before} == before
    written_names = {path.name for path in out.rglob("*")}
    assert not any(label in name for label in labels[:-1] for name in written_names)
    assert (out / "labels.txt").read_text(encoding="utf-8").splitlines()[2:] == sorted(labels)
    # Passing them back through --labels and --map works too.
    convert_ok(tmp_path / "in", tmp_path / "o2", "--labels", ",".join(labels))
    convert_ok(
        tmp_path / "in",
        tmp_path / "o3",
        "--labels",
        "cat",
        "--map",
        "a/b=cat",
        "--unknown-label",
        "ignore",
    )
    cls = read_array(tmp_path / "o3/SegmentationClass/evil.png")
    assert cls[5, 18] == 1 and cls[5, 6] == 255


def test_too_many_discovered_classes(tmp_path: Path) -> None:
    shapes = [shape(f"c{i:03d}", "point", [[1, 1]]) for i in range(260)]
    add_sample(tmp_path / "in", "x", shapes)
    result = run(*convert_args(tmp_path / "in", tmp_path / "out"))
    assert result.exit_code == 1
    assert "261 classes" in result.stderr and not (tmp_path / "out").exists()


# --- stems ----------------------------------------------------------------------------


def test_same_names_in_sub_folders_get_distinct_stems(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder / "a", "scene", [shape("zeta", "point", [[5, 5]])])
    add_sample(folder / "b", "scene", [shape("zeta", "point", [[20, 5]])])
    add_sample(folder, "scene")
    convert_ok(folder, out, "--labels", "zeta,cat")
    ids = {s["source"]: s["id"] for s in manifest(out)["samples"]}
    assert ids == {"a/scene.json": "a__scene", "b/scene.json": "b__scene", "scene.json": "scene"}
    assert read_array(out / "SegmentationClass/a__scene.png")[5, 5] == 1
    assert read_array(out / "SegmentationClass/b__scene.png")[5, 20] == 1
    assert len(list((out / "SegmentationClass").iterdir())) == 3


def test_ids_fit_split_files_whatever_spaces_the_names_hold(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    for seed, name in enumerate(("scene ", " tab\tbed", "plain")):
        noise = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        picture = PIL.Image.fromarray(noise)  # distinct pictures: no near-duplicate groups
        add_sample(folder, name, [shape("zeta", "point", [[5, 5]])], image=picture)
    convert_ok(folder, out, "--labels", "zeta")
    ids = sorted(s["id"] for s in manifest(out)["samples"])
    assert ids == ["plain", "scene", "tab bed"]
    assert run("split", out, "--val", "0.34", "--test", "0").exit_code == 0
    assert run("validate", out).exit_code == 0


def test_stems_stable_when_colliding_files_are_added(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder / "a", "b")
    convert_ok(folder, out)
    before = tree_mtimes(out / "SegmentationClass")
    # "a__b.json" and "A/b.json" would both be stem a__b (the latter case-insensitively).
    add_sample(folder, "a__b", [shape("cat", "point", [[20, 5]])])
    add_sample(folder / "A", "b", [shape("cat", "point", [[25, 5]])])
    summary = convert_ok(folder, out)
    assert summary["converted"] == 2 and summary["up_to_date"] == 1
    ids = {s["source"]: s["id"] for s in manifest(out)["samples"]}
    assert ids["a/b.json"] == "a__b"
    assert len({i.casefold() for i in ids.values()}) == 3
    assert tree_mtimes(out / "SegmentationClass")["a__b.png"] == before["a__b.png"]
    for source in ("a__b.json", "A/b.json"):
        assert (out / sample_by_source(out, source)["class_mask"]).is_file()


# --- incremental runs -----------------------------------------------------------------


def test_rerun_skips_unchanged_and_redoes_changed(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    add_sample(folder, "b")
    add_sample(folder, "c")
    convert_ok(folder, out)
    mtimes = tree_mtimes(out)

    result = run(*convert_args(folder, out))
    assert result.exit_code == 0
    assert re.search(r"up to date \(skipped\)\s*│\s*3\s*│", result.stdout), result.stdout
    assert re.search(r"converted now\s*│\s*0\s*│", result.stdout)
    after = tree_mtimes(out)
    outputs = [k for k in mtimes if k.startswith(("JPEGImages", "Segmentation"))]
    assert all(after[k] == mtimes[k] for k in outputs)

    doc = json.loads((folder / "a.json").read_text(encoding="utf-8"))
    doc["shapes"][0]["points"] = [[1, 1], [3, 3]]
    write_json(folder / "a.json", doc)
    gradient(32, 24, "L").convert("RGB").save(folder / "b.jpg")
    summary = convert_ok(folder, out)
    assert (summary["converted"], summary["up_to_date"]) == (2, 1)
    assert read_array(out / "SegmentationClass/a.png").sum() == 9

    summary = convert_ok(folder, out, "--image-format", "png")  # an option changed
    assert (summary["converted"], summary["up_to_date"]) == (3, 0)
    summary = convert_ok(folder, out, "--image-format", "png", "--force")
    assert (summary["converted"], summary["up_to_date"]) == (3, 0)
    summary = convert_ok(folder, out, "--image-format", "png")
    assert (summary["converted"], summary["up_to_date"]) == (0, 3)


def test_mask_rewritten_by_an_interrupted_run_is_redone(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    convert_ok(folder, out, "--labels", "cat")
    good = (out / "SegmentationClass/a.png").read_bytes()
    # As if a run with other labels was killed after writing this mask.
    (out / "SegmentationClass/a.png").write_bytes(encode(PIL.Image.new("P", (32, 24), 7), "PNG"))
    summary = convert_ok(folder, out, "--labels", "cat")
    assert summary["converted"] == 1
    assert (out / "SegmentationClass/a.png").read_bytes() == good


def test_changing_viz_adds_and_removes_overlays(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    convert_ok(folder, out, "--viz")
    assert (out / "SegmentationClassVisualization/a.jpg").is_file()
    convert_ok(folder, out)
    assert not (out / "SegmentationClassVisualization/a.jpg").exists()
    assert "visualization" not in sample_by_source(out, "a.json")


def test_deleted_or_now_failing_sources_lose_their_outputs(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b", "c"):
        add_sample(folder, name)
    convert_ok(folder, out, "--viz")
    (folder / "a.json").unlink()
    (folder / "b.json").write_text("{ broken", encoding="utf-8")
    result = run(*convert_args(folder, out, "--viz", "--json"))
    assert result.exit_code == 1
    assert sorted(json.loads(result.stdout)["removed"]) == ["a", "b"]
    assert sorted(p.name for p in out.rglob("*.*") if p.parent != out) == [
        "c.jpg",
        "c.jpg",
        "c.png",
        "c.png",
    ]
    assert [s["id"] for s in manifest(out)["samples"]] == ["c"]


def test_output_folder_rules(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    add_sample(folder, "a")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    result = run(*convert_args(folder, foreign))
    assert result.exit_code == 2 and "not empty" in result.stderr and "--force" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    convert_ok(folder, foreign, "--force")
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (foreign / "JPEGImages/a.jpg").is_file()

    result = run(*convert_args(folder, folder))
    assert result.exit_code == 2 and "must differ from the input" in result.stderr
    result = run(*convert_args(folder, folder / "a.json"))
    assert result.exit_code == 2 and "not a folder" in result.stderr
    result = run(*convert_args(tmp_path / "nowhere", tmp_path / "o"))
    assert result.exit_code == 2 and "input folder not found" in result.stderr
    result = run(*convert_args(folder / "a.json", tmp_path / "o"))
    assert result.exit_code == 2 and "a.json: is not a folder" in result.stderr


def test_json_suffix_in_any_case_and_hidden_folders(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    add_sample(folder, "shout")
    (folder / "shout.json").rename(folder / "SHOUT.JSON")
    add_sample(folder / ".backup", "old")  # hidden folders are skipped
    summary = convert_ok(folder, tmp_path / "out")
    assert summary["images"] == 1
    assert [s["source"] for s in manifest(tmp_path / "out")["samples"]] == ["SHOUT.JSON"]


def test_output_inside_input_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    add_sample(folder, "a")
    before = sorted(p.name for p in folder.rglob("*"))
    result = run(*convert_args(folder, folder / "sub" / "dataset"))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "output folder lies inside the input folder" in line and str(folder) in line
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing created


# --- bad input ------------------------------------------------------------------------


def _good_doc(**changes: object) -> dict:
    doc = labelme_doc(
        [shape("cat", "rectangle", [[1, 1], [5, 5]])], image_path="bad.jpg", size=(24, 32)
    )
    doc.update(changes)
    return doc


def _with_shape(bad: object) -> dict:
    return _good_doc(shapes=[shape("cat", "point", [[3, 3]]), bad])


_TINY_PNG = encode(gradient(4, 4), "PNG")
BAD_FILES: dict[str, tuple[object, str]] = {
    "malformed": ('{"shapes": [,]}', r"not valid JSON"),
    "truncated": (json.dumps(_good_doc())[:60], r"not valid JSON"),
    "list": ([1, 2], r"not a labelme file \(top level is a list\)"),
    "no_shapes": ({"imagePath": "bad.jpg"}, r"not a labelme file \(no 'shapes' list\)"),
    "label_type": (_with_shape(shape(5, "point", [[1, 1]])), r"shapes\[1\]: 'label' must"),  # type: ignore[arg-type]
    "points_type": (
        _with_shape(shape("cat", "point", [["a", 1]])),
        r"shapes\[1\].*points\[0\] must be \[x, y\] numbers",
    ),
    "group_type": (
        _with_shape(shape("cat", "point", [[1, 1]], group_id="3")),
        r"shapes\[1\].*'group_id' must be an integer",
    ),
    "nan": (
        _with_shape(shape("cat", "point", [[float("nan"), 1]])),
        r"shapes\[1\].*not finite",
    ),
    "infinity": (
        _with_shape(shape("cat", "point", [[1, float("-inf")]])),
        r"shapes\[1\].*not finite",
    ),
    "few_polygon": (
        _with_shape(shape("cat", "polygon", [[1, 1], [2, 2]])),
        r"shapes\[1\].*polygon needs at least 3 points, got 2",
    ),
    "few_rectangle": (
        _with_shape(shape("cat", "rectangle", [[1, 1]])),
        r"shapes\[1\].*rectangle needs exactly 2",
    ),
    "few_circle": (
        _with_shape(shape("cat", "circle", [[1, 1]])),
        r"shapes\[1\].*circle needs exactly 2",
    ),
    "few_line": (
        _with_shape(shape("cat", "line", [[1, 1]])),
        r"shapes\[1\].*line needs exactly 2",
    ),
    "few_linestrip": (
        _with_shape(shape("cat", "linestrip", [[1, 1]])),
        r"shapes\[1\].*linestrip needs at least 2",
    ),
    "many_point": (
        _with_shape(shape("cat", "point", [[1, 1], [2, 2]])),
        r"shapes\[1\].*point needs exactly 1",
    ),
    "few_oriented": (
        _with_shape(shape("cat", "oriented_rectangle", [[1, 1], [2, 2], [3, 1]])),
        r"shapes\[1\].*needs exactly 4",
    ),
    "few_mask": (
        _with_shape(shape("cat", "mask", [[1, 1]], mask=base64.b64encode(_TINY_PNG).decode())),
        r"shapes\[1\].*mask needs exactly 2",
    ),
    "shape_type": (
        _with_shape(shape("cat", "hexagon", [[1, 1]])),
        r"shapes\[1\]: unknown shape_type 'hexagon'",
    ),
    "far_away": (
        _with_shape(shape("cat", "circle", [[5, 5], [1e7, 5]])),
        r"shapes\[1\].*points\[1\].*outside the 24×32 image",
    ),
    "missing_image": (_good_doc(imagePath="nope.jpg"), r"image not found: .*nope\.jpg"),
    "corrupt_image": ("corrupt", r"cannot decode image .*bad\.jpg"),
    "bad_base64_image": (_good_doc(imageData="not*base64!"), r"'imageData' is not valid base64"),
    "bad_base64_mask": (
        _with_shape(shape("cat", "mask", [[1, 1], [4, 4]], mask="%%%")),
        r"shapes\[1\].*'mask' is not valid base64",
    ),
    "mask_not_png": (
        _with_shape(shape("cat", "mask", [[1, 1], [4, 4]], mask="aGVsbG8=")),
        r"shapes\[1\].*'mask' is not a valid PNG",
    ),
    "size_mismatch": (_good_doc(imageHeight=99), r"imageHeight is 99 but the image .* is 24"),
    "not_utf8": ("latin1", r"not UTF-8"),
    "label_newline": (
        _with_shape(shape("ca\nt", "point", [[1, 1]])),
        r"shapes\[1\].*line break",
    ),
    "label_surrogate": (
        _with_shape(shape("cat\ud800", "point", [[1, 1]])),
        r"shapes\[1\]: 'label' 'cat\\ud800' contains an unpaired surrogate",
    ),
    "image_path_surrogate": (_good_doc(imagePath="bad\udce9.jpg"), r"'imagePath' .*surrogate"),
    **{
        f"shape_type_{name}": (
            _with_shape(shape("cat", value, [[1, 1], [2, 2], [3, 1]])),  # type: ignore[arg-type]
            rf"shapes\[1\]: 'shape_type' must be a string or null, got {re.escape(repr(value))}",
        )
        for name, value in [("zero", 0), ("false", False), ("list", []), ("object", {})]
    },
    "shape_type_empty": (
        _with_shape(shape("cat", "", [[1, 1], [2, 2], [3, 1]])),
        r"shapes\[1\]: unknown shape_type ''",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_is_one_line_and_others_convert(tmp_path: Path, case: str) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "good")
    add_sample(folder / "sub", "bad")  # gives sub/bad.jpg, a valid image
    content, pattern = BAD_FILES[case]
    bad = folder / "sub/bad.json"
    if content == "corrupt":
        bad.parent.joinpath("bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    elif content == "latin1":
        bad.write_bytes(
            json.dumps(_good_doc(), ensure_ascii=False).replace("cat", "gató").encode("latin-1")
        )
    elif isinstance(content, str):
        bad.write_text(content, encoding="utf-8")
    else:
        bad.write_text(json.dumps(content), encoding="utf-8")  # NaN/Infinity as Python writes them

    result = run(*convert_args(folder, out, "--labels", "cat"))
    assert result.exit_code == 1, result.output
    (line,) = error_lines(result)
    assert line.startswith(f"error: {bad}: ")
    assert re.search(pattern, line), line
    assert "Traceback" not in result.output
    assert (out / "JPEGImages/good.jpg").is_file()
    assert (out / "SegmentationClass/good.png").is_file()
    assert not [p for p in out.rglob("*") if "bad" in p.name]
    assert temp_files(out) == []
    assert [s["source"] for s in manifest(out)["samples"]] == ["good.json"]


def test_max_pixels_refuses_then_accepts(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    add_sample(folder, "big", size=(24, 32))
    result = run(*convert_args(folder, tmp_path / "out", "--max-pixels", "700"))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "big.json" in line and "768 pixels, over the limit of 700" in line
    assert "--max-pixels" in line
    convert_ok(folder, tmp_path / "out", "--max-pixels", "768")
    assert (tmp_path / "out/JPEGImages/big.jpg").is_file()


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/readme.txt").write_text("no json here", encoding="utf-8")
    result = run(*convert_args(tmp_path / "in", tmp_path / "out"))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "no labelme .json files found" in line
    assert not (tmp_path / "out").exists()


def test_fail_fast_stops_at_first_failure(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for name in ("a_bad", "b_good", "c_bad", "d_good"):
        add_sample(folder, name)
    for name in ("a_bad", "c_bad"):
        (folder / f"{name}.json").write_text("{", encoding="utf-8")

    result = run(*convert_args(folder, tmp_path / "all"))
    assert result.exit_code == 1 and len(error_lines(result)) == 2
    assert (tmp_path / "all/JPEGImages/d_good.jpg").is_file()

    result = run(*convert_args(folder, tmp_path / "fast", "--fail-fast"))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "a_bad.json" in line
    assert not (tmp_path / "fast/JPEGImages").exists()
    assert manifest(tmp_path / "fast")["samples"] == []


def test_fail_fast_keeps_valid_earlier_outputs(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b", "c"):
        add_sample(folder, name)
    convert_ok(folder, out)
    (folder / "a.json").write_text("{", encoding="utf-8")
    result = run(*convert_args(folder, out, "--fail-fast"))
    assert result.exit_code == 1
    # b and c were never reached: their earlier outputs are still valid and listed.
    assert [s["id"] for s in manifest(out)["samples"]] == ["b", "c"]
    assert (out / "JPEGImages/b.jpg").is_file() and not (out / "JPEGImages/a.jpg").exists()


def test_previously_good_file_turning_bad_leaves_nothing(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "good")
    add_sample(folder, "flaky")
    convert_ok(folder, out, "--viz")
    (folder / "flaky.jpg").write_bytes(b"garbage")
    result = run(*convert_args(folder, out, "--viz"))
    assert result.exit_code == 1
    assert not [p for p in out.rglob("*") if "flaky" in p.name]
    assert temp_files(out) == []


def test_inputs_never_modified(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _oriented_folder(folder)
    _formats_folder(folder / "formats")
    add_sample(folder / "deep/er", "x")
    jpeg = encode(gradient(20, 10), "JPEG", exif=exif_bytes(8))
    write_json(
        folder / "emb.json", labelme_doc([], image_path="x.jpg", size=(10, 20), image_data=jpeg)
    )
    (folder / "broken.json").write_text("[", encoding="utf-8")
    hashes, mtimes = tree_hashes(folder), tree_mtimes(folder)
    for extra in ((), ("--force", "--viz"), ("--image-format", "png")):
        result = run(*convert_args(folder, tmp_path / "out", "--labels", "zeta,cat", *extra))
        assert result.exit_code == 1  # broken.json
    assert tree_hashes(folder) == hashes and tree_mtimes(folder) == mtimes


# --- the installed console script, and worker processes --------------------------------


def _segkit_script() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "segkit"
    return str(candidate) if candidate.exists() else str(Path(sys.executable).with_name("segkit"))


def test_console_script_in_a_subprocess(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    add_sample(folder, "ok")
    (folder / "broken.json").write_text('{"shapes": 3}', encoding="utf-8")
    completed = subprocess.run(
        [_segkit_script(), "convert", str(folder), "-o", str(tmp_path / "out"), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert completed.returncode == 1, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "broken.json" in lines[0]
    assert "images in dataset" in completed.stdout
    assert (tmp_path / "out/JPEGImages/ok.jpg").is_file()


def test_two_workers_write_what_one_worker_writes(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for index in range(5):
        add_sample(
            folder / f"d{index % 2}", f"img{index}", [shape("cat", "point", [[3 + index, 5]])]
        )
    (folder / "broken.json").write_text("nope", encoding="utf-8")
    one = run("convert", folder, "-o", tmp_path / "one", "--workers", "1", "--viz")
    two = run("convert", folder, "-o", tmp_path / "two", "--workers", "2", "--viz")
    assert one.exit_code == two.exit_code == 1
    assert error_lines(one) == error_lines(two)
    assert tree_hashes(tmp_path / "one") == tree_hashes(tmp_path / "two")
    assert len(manifest(tmp_path / "two")["samples"]) == 5


def test_truncated_jpeg_fails_even_when_its_bytes_would_be_copied(tmp_path: Path) -> None:
    # A copyable JPEG is only decoded at 1/8 scale; that must still catch truncation.
    source = add_sample(tmp_path / "in", "cut", size=(64, 96))
    image_file = source.with_suffix(".jpg")
    image_file.write_bytes(image_file.read_bytes()[:-200])
    result = run(*convert_args(tmp_path / "in", tmp_path / "out"))
    assert result.exit_code == 1
    assert "cannot decode image" in result.stderr
    assert not list((tmp_path / "out").glob("JPEGImages/*"))


def test_converting_another_folder_into_a_dataset_is_refused_without_force(
    tmp_path: Path,
) -> None:
    add_sample(tmp_path / "batch1", "a")
    add_sample(tmp_path / "batch2", "b")
    out = tmp_path / "out"
    assert run(*convert_args(tmp_path / "batch1", out)).exit_code == 0
    result = run(*convert_args(tmp_path / "batch2", out))
    assert result.exit_code == 2
    assert len(error_lines(result)) == 1 and "was converted from" in result.stderr
    assert (out / "JPEGImages" / "a.jpg").is_file()  # nothing removed
    assert run(*convert_args(tmp_path / "batch2", out, "--force")).exit_code == 0
    assert [s["id"] for s in manifest(out)["samples"]] == ["b"]
    assert not (out / "JPEGImages" / "a.jpg").exists()


def test_input_inside_output_is_named_as_the_problem(tmp_path: Path) -> None:
    add_sample(tmp_path / "out" / "annotations", "a")
    result = run(*convert_args(tmp_path / "out" / "annotations", tmp_path / "out"))
    assert result.exit_code == 2
    assert "input folder lies inside the output folder" in result.stderr


def test_output_below_a_file_is_one_line(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    (tmp_path / "afile").write_text("x")
    result = run(*convert_args(tmp_path / "in", tmp_path / "afile" / "ds"))
    assert result.exit_code == 2
    assert error_lines(result) and "is not a folder" in result.stderr


def test_a_rerun_repairs_an_edited_output_image(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    out = tmp_path / "out"
    assert run(*convert_args(tmp_path / "in", out)).exit_code == 0
    image = out / "JPEGImages" / "a.jpg"
    original = image.read_bytes()
    image.write_bytes(original + b"edited")
    assert run(*convert_args(tmp_path / "in", out)).exit_code == 0
    assert image.read_bytes() == original


def test_labels_of_files_that_fail_get_no_class_id(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "good", [shape("cat", "rectangle", [[1, 1], [5, 5]])])
    add_sample(tmp_path / "in", "bad", [shape("catt", "polygon", [[1, 1]])])
    out = tmp_path / "out"
    result = run(*convert_args(tmp_path / "in", out))
    assert result.exit_code == 1 and "bad.json" in result.stderr
    assert (out / "labels.txt").read_text().split() == ["__ignore__", "_background_", "cat"]


def test_only_segkit_temp_files_are_cleaned_up(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    out = tmp_path / "out"
    (out / "JPEGImages").mkdir(parents=True)
    leftover = out / "JPEGImages" / ".a.jpg.1a2b3c4d.tmp"  # _io's pattern
    leftover.write_bytes(b"half")
    users = out / "notes" / ".draft.tmp"
    users.parent.mkdir()
    users.write_text("mine")
    assert run(*convert_args(tmp_path / "in", out, "--force")).exit_code == 0
    assert not leftover.exists()
    assert users.read_text() == "mine"


# --- names, writes and folders that used to crash a run -------------------------------


def _consistent(out: Path) -> None:
    """Every output the manifest lists exists with the recorded hash."""
    for sample in manifest(out)["samples"]:
        for key in ("image", "class_mask", "object_mask"):
            data = (out / sample[key]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sample[f"{key}_sha256"], sample[key]


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes only on Linux")
def test_text_that_is_not_utf8_fails_its_file_only(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "good")
    doc = labelme_doc([shape("cat", "point", [[3, 3]])], image_path="good.jpg", size=(24, 32))
    # A Latin-1 file name (Python sees a surrogate), a label and an imagePath with lone
    # surrogates: none can be saved in UTF-8 labels.txt / segkit.json.
    Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.json")).write_text(json.dumps(doc))
    bad_label = {**doc, "shapes": [shape("dog\ud800", "point", [[1, 1]])]}
    (folder / "label.json").write_text(json.dumps(bad_label))  # as \ud800 escapes
    (folder / "path.json").write_text(json.dumps({**doc, "imagePath": "good\udce9.jpg"}))
    for _ in range(2):  # the dataset stays usable: a re-run is not refused
        result = run(*convert_args(folder, out))
        assert result.exit_code == 1, result.output
        lines = error_lines(result)
        assert len(lines) == 3 and "Traceback" not in result.output
        assert f"{folder}/caf\\udce9.json: file name is not valid UTF-8" in lines[0]
        assert any("label.json: shapes[0]: 'label' 'dog\\ud800'" in line for line in lines)
        assert any("path.json: 'imagePath' 'good\\udce9.jpg'" in line for line in lines)
        assert [s["source"] for s in manifest(out)["samples"]] == ["good.json"]
        assert (out / "labels.txt").read_text().split() == ["__ignore__", "_background_", "cat"]
        assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == ["good.jpg"]
    result = run(*convert_args(folder, tmp_path / "first", "--fail-fast"))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "caf\\udce9.json: file name is not valid UTF-8" in line
    assert manifest(tmp_path / "first")["samples"] == []


def _converted_a_and_b(tmp_path: Path) -> tuple[Path, Path]:
    """Input folder with samples a and b, converted once; returns (input, output)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    add_sample(folder, "b")
    convert_ok(folder, out)
    return folder, out


def _folder_in_place_of(path: Path) -> None:
    path.unlink()
    path.mkdir()


def test_an_output_that_cannot_be_written_fails_that_file_only(tmp_path: Path) -> None:
    folder, out = _converted_a_and_b(tmp_path)
    _folder_in_place_of(out / "SegmentationClass/b.png")  # a folder where the mask goes
    result = run(*convert_args(folder, out, "--force"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = error_lines(result)
    assert line.startswith(f"error: {folder / 'b.json'}: cannot write ")
    assert "SegmentationClass/b.png (Is a directory)" in line
    # b failed, so its outputs went (as for any failing file) and so did its entry.
    assert [s["id"] for s in manifest(out)["samples"]] == ["a"]
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == ["a.jpg"]
    assert not (out / "SegmentationObject/b.png").exists()
    assert (out / "SegmentationClass/b.png").is_dir()
    assert temp_files(out) == []
    _consistent(out)
    (out / "SegmentationClass/b.png").rmdir()
    summary = convert_ok(folder, out)
    assert (summary["converted"], summary["up_to_date"]) == (1, 1)
    _consistent(out)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes read-only folders"
)
def test_a_read_only_mask_folder_fails_each_file_without_a_traceback(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    convert_ok(folder, out)
    add_sample(folder, "b")
    (out / "SegmentationClass").chmod(0o555)
    try:
        result = run(*convert_args(folder, out))
    finally:
        (out / "SegmentationClass").chmod(0o755)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = error_lines(result)
    assert "b.json: cannot write" in line and "Permission denied" in line
    assert [s["id"] for s in manifest(out)["samples"]] == ["a"]
    _consistent(out)


def test_a_long_file_name_gets_a_shortened_stable_id(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    name = "n" * 244  # + ".json" is a valid 249-byte name; the temporary file was not
    add_sample(folder, name)
    add_sample(folder / ("d" * 120) / ("e" * 120), "scene")  # "__"-joined: 250 bytes
    convert_ok(folder, out)
    ids = [s["id"] for s in manifest(out)["samples"]]
    assert all(len(i.encode()) <= 200 and re.fullmatch(r".*-[0-9a-f]{8}", i) for i in ids)
    assert sorted(i[:3] for i in ids) == ["ddd", "nnn"]
    assert (out / "JPEGImages" / f"{ids[1]}.jpg").is_file()
    summary = convert_ok(folder, out, "--force")
    assert [s["id"] for s in manifest(out)["samples"]] == ids
    assert summary["converted"] == 2


def test_force_from_another_folder_discovers_labels_afresh(tmp_path: Path) -> None:
    add_sample(tmp_path / "one", "a", [shape("cat", "point", [[3, 3]])])
    add_sample(tmp_path / "two", "b", [shape("dog", "point", [[3, 3]])])
    out = tmp_path / "out"
    convert_ok(tmp_path / "one", out)
    convert_ok(tmp_path / "two", out, "--force")
    assert (out / "class_names.txt").read_text().split() == ["_background_", "dog"]
    assert manifest(out)["classes"] == ["_background_", "dog"]
    # Same folder and --force: ids stay as they are (--force does not renumber).
    add_sample(tmp_path / "two", "c", [shape("ant", "point", [[3, 3]])])
    convert_ok(tmp_path / "two", out)
    convert_ok(tmp_path / "two", out, "--force")
    assert manifest(out)["classes"] == ["_background_", "dog", "ant"]
    # Labels given with --labels are used as given.
    convert_ok(tmp_path / "one", out, "--force", "--labels", "cat,dog")
    assert manifest(out)["classes"] == ["_background_", "cat", "dog"]


def test_force_from_another_folder_keeps_no_ids_splits_or_weights(tmp_path: Path) -> None:
    one, two, out = tmp_path / "one", tmp_path / "two", tmp_path / "out"
    for seed, name in enumerate(("a", "A", "b", "c")):
        noise = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        add_sample(one, name, [shape("cat", "point", [[3, 3]])], image=PIL.Image.fromarray(noise))
    add_sample(two, "a", [shape("dog", "point", [[3, 3]])])
    convert_ok(one, out)
    assert run("split", out, "--val", "0.5", "--test", "0").exit_code == 0
    assert run("weights", out).exit_code == 0
    assert {"splits", "weights"} <= set(manifest(out))
    convert_ok(two, out, "--force")
    assert [s["id"] for s in manifest(out)["samples"]] == ["a"]  # not the old "a-<hash>"
    assert not {"splits", "weights"} & set(manifest(out))


def test_failed_dataset_files_leave_the_old_manifest_true(tmp_path: Path) -> None:
    folder, out = _converted_a_and_b(tmp_path)
    (folder / "b.json").unlink()
    _folder_in_place_of(out / "class_names.txt")
    result = run(*convert_args(folder, out))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "cannot write the dataset files" in line
    # The old manifest still lists b, so b's files must still be there.
    for sample in manifest(out)["samples"]:
        for key in ("image", "class_mask", "object_mask"):
            assert (out / sample[key]).is_file(), sample[key]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("convert", "x", "'convert' must be an object"),
        ("classes", [1], "'classes' must list class names"),
    ],
)
def test_manifest_with_wrong_types_is_one_line_and_force_replaces_it(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    convert_ok(folder, out)
    broken = manifest(out)
    broken[key] = value
    (out / "segkit.json").write_text(json.dumps(broken), encoding="utf-8")
    result = run(*convert_args(folder, out))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert message in line and "pass --force" in line
    convert_ok(folder, out, "--force")
    assert [s["id"] for s in manifest(out)["samples"]] == ["a"]


def test_sample_fields_of_the_wrong_type_are_one_line(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    convert_ok(folder, out)
    broken = manifest(out)
    broken["samples"][0]["class_pixels"] = "x"
    (out / "segkit.json").write_text(json.dumps(broken), encoding="utf-8")
    result = run(*convert_args(folder, out))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "samples[0].class_pixels must be a dict" in line


def test_datasets_inside_the_input_folder_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    add_sample(folder, "a")
    add_sample(tmp_path / "other", "b")
    convert_ok(tmp_path / "other", folder / "old_dataset")  # has segkit.json
    add_sample(folder / "old_dataset" / "notes", "c")  # below a dataset: skipped too
    first = convert_ok(folder, tmp_path / "out")
    again = convert_ok(folder, tmp_path / "out")
    assert first["images"] == again["images"] == 1
    assert [s["source"] for s in manifest(tmp_path / "out")["samples"]] == ["a.json"]


def test_corrupt_manifest_needs_force_and_force_replaces_it(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    add_sample(folder, "a")
    convert_ok(folder, out)
    (out / "segkit.json").write_text('{"schema_version": 1, "clas', encoding="utf-8")
    result = run(*convert_args(folder, out))
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "not valid JSON" in line and "pass --force to replace" in line
    convert_ok(folder, out, "--force")
    assert [s["id"] for s in manifest(out)["samples"]] == ["a"]
    _consistent(out)
