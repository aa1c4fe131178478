"""Palette PNG round trips and labels parsing."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segkit.errors import DatasetError
from segkit.voc import (
    encode_palette_png,
    encode_uint16_png,
    parse_labels,
    read_labels,
    read_mask,
    read_split_file,
    voc_colormap,
)


def test_colormap_matches_voc_definition() -> None:
    cmap = voc_colormap()
    # Published VOC colours: aeroplane (1), person (15), void (255).
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[15].tolist() == [192, 128, 128]
    assert cmap[255].tolist() == [224, 224, 192]
    assert len({tuple(row) for row in cmap.tolist()}) == 256


@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_palette_png_round_trip(tmp_path_factory: pytest.TempPathFactory, mask: np.ndarray) -> None:
    path = tmp_path_factory.mktemp("png") / "m.png"
    path.write_bytes(encode_palette_png(mask))
    with PIL.Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    np.testing.assert_array_equal(read_mask(path), mask)


def test_rgb_mask_rejected_with_advice(tmp_path) -> None:
    path = tmp_path / "rgb.png"
    PIL.Image.new("RGB", (4, 4), (128, 0, 0)).save(path)
    with pytest.raises(DatasetError, match=r"RGB colour image.*palette"):
        read_mask(path)


def test_parse_labels_rules() -> None:
    labels = parse_labels("__ignore__\n_background_\ncat\ndog\n", "labels.txt")
    assert labels.to_ids() == {"_background_": 0, "cat": 1, "dog": 2, "__ignore__": 255}
    assert parse_labels("cat, dog", "cli").names == ("_background_", "cat", "dog")
    with pytest.raises(DatasetError, match="duplicate"):
        parse_labels("cat,cat", "cli")
    with pytest.raises(DatasetError, match="must be the first"):
        parse_labels("cat\n__ignore__\n", "labels.txt")


def test_sixteen_bit_mask_is_an_instance_mask_only(tmp_path) -> None:
    # Class masks are 8-bit (palette or L); 16-bit grayscale is the documented format
    # for instance masks with more than 254 instances (docs/formats.md).
    path = tmp_path / "wide.png"
    ids = np.array([[0, 1], [300, 65535]], dtype=np.uint16)
    path.write_bytes(encode_uint16_png(ids))
    with pytest.raises(DatasetError, match=r"wide\.png: class mask has mode 'I;16'.*8-bit"):
        read_mask(path)
    with pytest.raises(DatasetError, match="16-bit grayscale is only for instance masks"):
        read_mask(path, "class")
    instances = read_mask(path, "instance")
    assert instances.dtype == np.uint16
    np.testing.assert_array_equal(instances, ids)


def test_masks_over_the_pixel_limit_are_read(tmp_path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    mask = np.arange(24 * 30, dtype=np.int64).reshape(24, 30) % 5
    path.write_bytes(encode_palette_png(mask))
    # 720 pixels is over twice the limit: Pillow alone raises DecompressionBombError.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    np.testing.assert_array_equal(read_mask(path), mask)
    assert PIL.Image.MAX_IMAGE_PIXELS == 100
    (tmp_path / "broken.png").write_bytes(path.read_bytes()[:60])
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read mask"):
        read_mask(tmp_path / "broken.png")


def test_label_files_may_start_with_a_byte_order_mark(tmp_path) -> None:
    path = tmp_path / "class_names.txt"
    path.write_bytes("_background_\ncat\ndog\n".encode("utf-8-sig"))
    assert read_labels(path).names == ("_background_", "cat", "dog")
    path.write_bytes("__ignore__\r\n_background_\r\ncat\r\n".encode("utf-8-sig"))
    assert read_labels(path).to_ids() == {"_background_": 0, "cat": 1, "__ignore__": 255}


def test_split_files_bom_and_bad_encoding(tmp_path) -> None:
    path = tmp_path / "train.txt"
    path.write_bytes("a\n\n b \nc".encode("utf-8-sig"))
    assert read_split_file(path) == ["a", "b", "c"]
    path.write_bytes(b"a\n\xff\xfeb\n")
    with pytest.raises(DatasetError, match=r"train\.txt: split file is not UTF-8 text"):
        read_split_file(path)
