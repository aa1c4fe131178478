"""Images already in a dataset: any size that fits in memory is read; a decompression
bomb is refused when opened, naming the file, before anything is decoded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import voc_builder

import segkit._pillow as pillow
from segkit.errors import DatasetError
from segkit.train.data import read_image
from segkit.validate_stage import validate_dataset


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` RGB pixels, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_the_cap_is_the_machines_memory_over_eight_bytes_a_pixel() -> None:
    cap = pillow.memory_pixel_cap()
    assert cap is not None and cap > 10_000_000  # any machine that runs torch
    saved = PIL.Image.MAX_IMAGE_PIXELS
    with pillow.pixel_limit_lifted():
        assert cap // 2 == PIL.Image.MAX_IMAGE_PIXELS  # Pillow refuses above twice this
    assert saved == PIL.Image.MAX_IMAGE_PIXELS


def test_a_bomb_in_a_dataset_is_refused_by_name_and_large_images_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mask = np.zeros((8, 8), np.uint8)
    root = voc_builder.write_voc(tmp_path / "ds", {"a": mask}, classes=("_background_", "x"))
    bomb = root / "JPEGImages" / "a.png"
    bomb.write_bytes(_png_header(60_000, 60_000))
    with pytest.raises(
        DatasetError,
        match=r"a\.png: cannot read image \(the image's "
        r"3,600,000,000 pixels are more than this machine's memory can decode",
    ):
        read_image(bomb)  # fmt: skip
    findings = [f for f in validate_dataset(root) if f.file.endswith("a.png")]
    assert any("memory can decode" in f.detail for f in findings), findings
    # Under the cap an image is read whatever Pillow's own default limit says.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 10)
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bomb)
    assert read_image(bomb).shape == (8, 8, 3)
