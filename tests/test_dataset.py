"""Opening a VOC folder: class lists and split files as other tools and editors write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segkit.dataset import open_dataset
from segkit.errors import DatasetError
from segkit.voc import encode_palette_png


def tiny_voc(root: Path) -> Path:
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "SegmentationClass" / "a.png").write_bytes(encode_palette_png(np.zeros((4, 4))))
    return root


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("class_names.txt", "_background_\ncat\ndog\n"),
        ("labels.txt", "__ignore__\r\n_background_\r\ncat\r\ndog\r\n"),
    ],
)
def test_byte_order_mark_does_not_shift_class_ids(tmp_path: Path, name: str, text: str) -> None:
    # Notepad on Windows saves UTF-8 with a BOM; read as "utf-8" the first name became
    # "\ufeff_background_", background was prepended and every class id moved by one.
    root = tiny_voc(tmp_path / "voc")
    (root / name).write_bytes(text.encode("utf-8-sig"))
    assert open_dataset(root).classes == ("_background_", "cat", "dog")


def test_non_utf8_class_list_is_one_error_naming_the_file(tmp_path: Path) -> None:
    root = tiny_voc(tmp_path / "voc")
    (root / "class_names.txt").write_bytes("_background_\nchat\nbœuf\n".encode("cp1252"))
    with pytest.raises(DatasetError, match=r"class_names\.txt: label list is not UTF-8 text"):
        open_dataset(root)


def test_split_file_bom_and_bad_encoding(tmp_path: Path) -> None:
    root = tiny_voc(tmp_path / "voc")
    folder = root / "ImageSets" / "Segmentation"
    folder.mkdir(parents=True)
    (folder / "train.txt").write_bytes(b"\xef\xbb\xbfa\r\n")
    dataset = open_dataset(root)
    assert dataset.read_split("train") == ["a"]
    (folder / "val.txt").write_bytes("a\nbœuf\n".encode("cp1252"))
    with pytest.raises(DatasetError, match=r"val\.txt: split file is not UTF-8 text") as caught:
        dataset.read_split("val")
    assert "\n" not in str(caught.value)
