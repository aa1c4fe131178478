"""Palette PNG round trips and labels parsing."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segkit.errors import DatasetError
from segkit.voc import encode_palette_png, parse_labels, read_mask, voc_colormap


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
