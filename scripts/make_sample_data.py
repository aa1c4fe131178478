"""Regenerate ``sample_data/``: small synthetic labelme annotations made by segkit itself.

Each scene is drawn from its own shapes (cells, nuclei, debris, a scratch line ...) on
a noisy background, so the images really show what is annotated and a model can learn
them. Covered on purpose: every shape type, touching objects, group_id, an
``__ignore__`` region, one file with ``imageData`` embedded, one JPEG whose EXIF
orientation tag rotates it, one 16-bit grayscale TIFF, and two same-named files in
different folders.

Run: ``python scripts/make_sample_data.py [OUT_DIR]`` (default: sample_data).
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

WIDTH, HEIGHT = 160, 120
COLOURS = {"cell": (200, 90, 90), "nucleus": (60, 40, 160), "debris": (90, 160, 60)}


def _polygon(cx: float, cy: float, r: float, n: int, rng: np.random.Generator) -> list[list[float]]:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.75, 1.0, n)
    return [
        [round(float(cx + rr * np.cos(a)), 2), round(float(cy + rr * np.sin(a)), 2)]
        for a, rr in zip(angles, radii, strict=True)
    ]


def _shape(label: str, kind: str, points: list, group_id: int | None = None, **extra) -> dict:
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "description": "",
        "shape_type": kind,
        "flags": {},
        **extra,
    }


def _mask_b64(bitmap: np.ndarray) -> str:
    buffer = io.BytesIO()
    PIL.Image.fromarray(bitmap.astype(np.uint8) * 255).convert("1").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _render(shapes: list[dict], rng: np.random.Generator, size=(WIDTH, HEIGHT)) -> PIL.Image.Image:
    """Paint the shapes' colours over noise, in order, roughly as the annotation shows them."""
    image = PIL.Image.fromarray(rng.integers(20, 60, (size[1], size[0], 3), dtype=np.uint8))
    draw = PIL.ImageDraw.Draw(image)
    for shape in shapes:
        colour = COLOURS.get(shape["label"], (128, 128, 128))
        xy = [tuple(p) for p in shape["points"]]
        kind = shape["shape_type"]
        if kind in ("polygon", "oriented_rectangle"):
            draw.polygon(xy, fill=colour)
        elif kind == "rectangle":
            draw.rectangle(
                [min(xy)[0], min(p[1] for p in xy), max(xy)[0], max(p[1] for p in xy)], fill=colour
            )
        elif kind == "circle":
            (cx, cy), (px, py) = xy
            r = ((cx - px) ** 2 + (cy - py) ** 2) ** 0.5
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        elif kind in ("line", "linestrip"):
            draw.line(xy, fill=colour, width=10, joint="curve")
        elif kind == "point":
            (cx, cy) = xy[0]
            draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=colour)
    noise = rng.integers(-12, 12, (size[1], size[0], 3))
    return PIL.Image.fromarray(
        np.clip(np.asarray(image, dtype=int) + noise, 0, 255).astype(np.uint8)
    )


def _annotation(
    shapes: list[dict], image_path: str | None, size, image_data: str | None = None
) -> dict:
    return {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": image_data,
        "imageHeight": size[1],
        "imageWidth": size[0],
    }


def _write(path: Path, annotation: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(annotation, indent=2) + "\n", encoding="utf-8")


def _touching_cells(rng: np.random.Generator) -> list[dict]:
    """Two touching cells, each with a nucleus joined by group_id, plus debris."""
    shapes = []
    for group, (cx, cy) in enumerate([(50, 60), (88, 58)], start=1):
        shapes.append(_shape("cell", "polygon", _polygon(cx, cy, 22, 9, rng), group))
        shapes.append(_shape("nucleus", "circle", [[cx, cy], [cx + 7, cy + 2]], group))
    shapes.append(_shape("debris", "rectangle", [[120, 15], [145, 35]]))
    shapes.append(_shape("__ignore__", "rectangle", [[5, 95], [30, 118]]))
    return shapes


def main(out: Path) -> None:
    """Write the sample scenes into ``out``."""
    rng = np.random.default_rng(7)
    size = (WIDTH, HEIGHT)

    shapes = _touching_cells(rng)
    _render(shapes, rng).save(out / "scene_01.jpg", quality=92)
    _write(out / "scene_01.json", _annotation(shapes, "scene_01.jpg", size))

    shapes = [
        _shape("cell", "polygon", _polygon(40, 40, 25, 8, rng)),
        _shape("debris", "line", [[90, 10], [150, 50]]),
        _shape("debris", "linestrip", [[10, 100], [60, 80], [90, 110], [150, 95]]),
        _shape("nucleus", "point", [[40, 40]]),
        _shape("cell", "polygon", _polygon(155, 110, 20, 7, rng)),  # partly outside
    ]
    _render(shapes, rng).save(out / "scene_02.png")
    _write(out / "scene_02.json", _annotation(shapes, "scene_02.png", size))

    # EXIF orientation 6: stored landscape, shown (and annotated) as portrait.
    shown = (HEIGHT, WIDTH)
    shapes = [
        _shape("cell", "polygon", _polygon(60, 50, 28, 10, rng)),
        _shape("nucleus", "circle", [[60, 50], [68, 50]]),
        _shape("debris", "rectangle", [[10, 120], [50, 150]]),
    ]
    displayed = _render(shapes, rng, size=shown)
    stored = displayed.transpose(PIL.Image.Transpose.ROTATE_90)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    (out / "phone").mkdir(exist_ok=True)
    stored.save(out / "phone" / "rotated_03.jpg", quality=92, exif=exif.tobytes())
    _write(out / "phone" / "rotated_03.json", _annotation(shapes, "rotated_03.jpg", shown))

    # imageData embedded (no image file), oriented rectangle and a mask shape.
    bitmap = np.zeros((20, 30), dtype=bool)
    bitmap[3:17, 4:26] = True
    bitmap[8:12, 10:20] = False
    shapes = [
        _shape("cell", "oriented_rectangle", [[30, 20], [80, 40], [70, 65], [20, 45]]),
        _shape("debris", "mask", [[100, 70], [129, 89]], mask=_mask_b64(bitmap)),
    ]
    buffer = io.BytesIO()
    _render(shapes, rng).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    _write(out / "embedded_04.json", _annotation(shapes, "embedded_04.png", size, data))

    # 16-bit grayscale microscopy TIFF, images kept in another folder (Windows-style path).
    shapes = [
        _shape("cell", "polygon", _polygon(60, 60, 30, 12, rng), 1),
        _shape("nucleus", "polygon", _polygon(60, 60, 10, 8, rng), 1),
        _shape("cell", "polygon", _polygon(112, 55, 26, 11, rng), 2),
    ]
    gray = np.asarray(_render(shapes, rng).convert("L"), dtype=np.uint16) * 200
    (out / "images").mkdir(exist_ok=True)
    PIL.Image.fromarray(gray).save(out / "images" / "micro_05.tif")
    _write(
        out / "annotations" / "micro_05.json", _annotation(shapes, "..\\images\\micro_05.tif", size)
    )

    # Same file name as the first scene, in another folder: gets its own id.
    shapes = _touching_cells(rng)
    (out / "batch2").mkdir(exist_ok=True)
    _render(shapes, rng).save(out / "batch2" / "scene_01.jpg", quality=92)
    _write(out / "batch2" / "scene_01.json", _annotation(shapes, "scene_01.jpg", size))

    (out / "labels.txt").write_text("__ignore__\n_background_\ncell\nnucleus\ndebris\n", "utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "sample_data")
    target.mkdir(parents=True, exist_ok=True)
    main(target)
