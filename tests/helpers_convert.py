"""Builders for labelme folders on disk, and a runner for the real `segkit convert` CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from typer.testing import CliRunner, Result

from segkit.cli import app

ORIENTATION = 0x0112
#: exif_transpose applies these to the stored pixels; the inverse builds a stored image.
INVERSE_ORIENTATION: dict[int, tuple[PIL.Image.Transpose, ...]] = {
    2: (PIL.Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (PIL.Image.Transpose.ROTATE_180,),
    4: (PIL.Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (PIL.Image.Transpose.TRANSPOSE,),
    6: (PIL.Image.Transpose.ROTATE_90,),
    7: (PIL.Image.Transpose.TRANSVERSE,),
    8: (PIL.Image.Transpose.ROTATE_270,),
}


def gradient(width: int, height: int, mode: str = "RGB") -> PIL.Image.Image:
    """A smooth, asymmetric test picture (JPEG-friendly, so re-encodes stay close)."""
    y, x = np.mgrid[0:height, 0:width]
    red = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    green = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    blue = np.full_like(red, 90)
    image = PIL.Image.fromarray(np.stack([red, green, blue], axis=-1))
    return image if mode == "RGB" else image.convert(mode)


def exif_bytes(orientation: int) -> bytes:
    exif = PIL.Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def encode(image: PIL.Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def shape(
    label: str,
    shape_type: str,
    points: list[list[float]],
    group_id: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
        **extra,
    }


def mask_shape(label: str, corners: list[list[float]], bitmap: np.ndarray) -> dict[str, Any]:
    png = encode(PIL.Image.fromarray(bitmap.astype(bool)), "PNG")
    return shape(label, "mask", corners, mask=base64.b64encode(png).decode())


def labelme_doc(
    shapes: list[dict[str, Any]],
    *,
    image_path: str | None,
    size: tuple[int, int] | None,
    image_data: bytes | None = None,
) -> dict[str, Any]:
    """A labelme 5 document; ``size`` is (height, width) or None to leave it out."""
    return {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode() if image_data is not None else None,
        "imageHeight": size[0] if size else None,
        "imageWidth": size[1] if size else None,
    }


def write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def add_sample(
    folder: Path,
    name: str,
    shapes: list[dict[str, Any]] | None = None,
    *,
    size: tuple[int, int] = (24, 32),
    image: PIL.Image.Image | None = None,
    fmt: str = "JPEG",
    suffix: str = ".jpg",
) -> Path:
    """``folder/name.json`` next to ``folder/name<suffix>``; returns the JSON path."""
    height, width = size
    picture = image if image is not None else gradient(width, height)
    folder.mkdir(parents=True, exist_ok=True)
    image_file = folder / f"{Path(name).name}{suffix}"
    image_file.parent.mkdir(parents=True, exist_ok=True)
    image_file.write_bytes(encode(picture, fmt))
    if shapes is None:
        shapes = [shape("cat", "rectangle", [[2, 2], [9, 9]])]
    doc = labelme_doc(shapes, image_path=image_file.name, size=(picture.height, picture.width))
    return write_json(folder / f"{name}.json", doc)


def run(*args: str | Path) -> Result:
    """Invoke ``segkit`` in-process; stderr is kept apart from stdout."""
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def convert_args(source: Path, output: Path, *extra: str | Path) -> list[str | Path]:
    return ["convert", source, "-o", output, "--workers", "1", *extra]


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file below ``root``."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def tree_mtimes(root: Path) -> dict[str, int]:
    return {
        path.relative_to(root).as_posix(): path.stat().st_mtime_ns
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def temp_files(root: Path) -> list[Path]:
    """Leftovers of an interrupted atomic write (``.name.XXXX.tmp``)."""
    return [path for path in root.rglob("*") if path.name.endswith(".tmp")]


def manifest(output: Path) -> dict[str, Any]:
    return json.loads((output / "segkit.json").read_text(encoding="utf-8"))


def sample_by_source(output: Path, source: str) -> dict[str, Any]:
    (found,) = [s for s in manifest(output)["samples"] if s["source"] == source]
    return found


def read_array(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image)


def voc_colormap_reference(n: int = 256) -> np.ndarray:
    """imgviz.label_colormap, written out independently of segkit's implementation."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        cmap[index] = red, green, blue
    return cmap


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]
