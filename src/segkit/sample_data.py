"""The bundled sample data: small synthetic labelme annotations drawn by segkit itself.

``write_sample_data(out)`` writes the edge cases that the repository's ``sample_data/``
holds (every shape type, touching objects, group_id, an ``__ignore__`` region, one file
with ``imageData`` embedded, one JPEG whose EXIF orientation tag rotates it, one 16-bit
grayscale TIFF, two same-named files in different folders); ``scenes=N`` adds N training
scenes of touching cells with nuclei and debris, so that a model can learn the classes
and border weights matter (``segkit demo`` uses 42). Deterministic: the same call
writes the same bytes, from an installed wheel as from a checkout; no third-party images.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

from segkit.errors import OptionError

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


def _render(
    shapes: list[dict],
    rng: np.random.Generator,
    size=(WIDTH, HEIGHT),
    outline: tuple[int, int, int] | None = None,
) -> PIL.Image.Image:
    """Paint the shapes' colours over noise, in order, roughly as the annotation shows them.

    ``outline`` draws polygons' edges darker, like cell membranes: touching cells of one
    class stay apart in the picture, as they do under a microscope.
    """
    image = PIL.Image.fromarray(rng.integers(20, 60, (size[1], size[0], 3), dtype=np.uint8))
    draw = PIL.ImageDraw.Draw(image)
    for shape in shapes:
        colour = COLOURS.get(shape["label"], (128, 128, 128))
        xy = [tuple(p) for p in shape["points"]]
        kind = shape["shape_type"]
        if kind in ("polygon", "oriented_rectangle"):
            draw.polygon(xy, fill=colour, outline=outline)
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


def _edge_cases(out: Path, tiff16: bool = True) -> None:
    """The six annotations of the repository's ``sample_data/`` (their bytes never change)."""
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
    if tiff16:
        (out / "images").mkdir(exist_ok=True)
        PIL.Image.fromarray(gray).save(out / "images" / "micro_05.tif")
        _write(
            out / "annotations" / "micro_05.json",
            _annotation(shapes, "..\\images\\micro_05.tif", size),
        )

    # Same file name as the first scene, in another folder: gets its own id.
    shapes = _touching_cells(rng)
    (out / "batch2").mkdir(exist_ok=True)
    _render(shapes, rng).save(out / "batch2" / "scene_01.jpg", quality=92)
    _write(out / "batch2" / "scene_01.json", _annotation(shapes, "scene_01.jpg", size))


#: Side of the training scenes: small enough for a CPU to train on in minutes.
SCENE_SIZE = 128


def _cluster(rng: np.random.Generator, count: int) -> list[tuple[float, float, float]]:
    """``count`` cells (x, y, radius) in one chain, each touching the one before it."""
    r = float(rng.uniform(13, 19))
    x, y = (float(v) for v in rng.uniform(30, SCENE_SIZE - 30, 2))
    cells = [(x, y, r)]
    for _ in range(count - 1):
        px, py, pr = cells[int(rng.integers(len(cells)))]
        r = float(rng.uniform(12, 18))
        angle = float(rng.uniform(0, 2 * np.pi))
        gap = pr + r - float(rng.uniform(2, 5))  # slightly overlapping: touching boundaries
        x = float(np.clip(px + gap * np.cos(angle), 8, SCENE_SIZE - 8))
        y = float(np.clip(py + gap * np.sin(angle), 8, SCENE_SIZE - 8))
        cells.append((x, y, r))
    return cells


def _scene_shapes(rng: np.random.Generator, index: int) -> list[dict]:
    """Touching cells (polygons) with nuclei (circles or points, joined by group_id),
    debris (rectangles or line strips), now and then an ``__ignore__`` region."""
    shapes = []
    cells = _cluster(rng, int(rng.integers(2, 5)))
    if rng.random() < 0.6:
        cells += _cluster(rng, int(rng.integers(1, 3)))
    for group, (cx, cy, r) in enumerate(cells, start=1):
        shapes.append(
            _shape("cell", "polygon", _polygon(cx, cy, r, int(rng.integers(8, 13)), rng), group)
        )
        nx, ny = cx + float(rng.uniform(-3, 3)), cy + float(rng.uniform(-3, 3))
        if rng.random() < 0.85:
            nr = float(rng.uniform(4, 7))
            points = [[round(nx, 2), round(ny, 2)], [round(nx + nr, 2), round(ny, 2)]]
            shapes.append(_shape("nucleus", "circle", points, group))
        else:
            shapes.append(_shape("nucleus", "point", [[round(nx, 2), round(ny, 2)]], group))
    for _ in range(int(rng.integers(1, 4))):
        x, y = (float(v) for v in rng.uniform(5, SCENE_SIZE - 25, 2))
        if rng.random() < 0.6:
            w, h = (float(v) for v in rng.uniform(6, 16, 2))
            shapes.append(
                _shape(
                    "debris",
                    "rectangle",
                    [[round(x, 2), round(y, 2)], [round(x + w, 2), round(y + h, 2)]],
                )
            )
        else:
            points = [[round(x + dx, 2), round(y + dy, 2)] for dx, dy in rng.uniform(0, 22, (3, 2))]
            shapes.append(_shape("debris", "linestrip", points))
    if index % 7 == 3:
        x, y = (float(v) for v in rng.uniform(0, SCENE_SIZE - 20, 2))
        shapes.append(
            _shape(
                "__ignore__",
                "rectangle",
                [[round(x, 2), round(y, 2)], [round(x + 18, 2), round(y + 18, 2)]],
            )
        )
    return shapes


def _scenes(out: Path, count: int) -> None:
    """``count`` training scenes in ``out/scenes/`` (JPEG + labelme JSON each)."""
    rng = np.random.default_rng(2024)
    size = (SCENE_SIZE, SCENE_SIZE)
    folder = out / "scenes"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        shapes = _scene_shapes(rng, index)
        name = f"cells_{index + 1:03d}"
        _render(shapes, rng, size=size, outline=(120, 50, 50)).save(
            folder / f"{name}.jpg", quality=90
        )
        _write(folder / f"{name}.json", _annotation(shapes, f"{name}.jpg", size))


#: The classes of the sample data, in labelme's ``labels.txt`` form.
LABELS = "__ignore__\n_background_\ncell\nnucleus\ndebris\n"
#: Training scenes ``segkit demo`` adds to the edge cases (48 images in all).
DEMO_SCENES = 42


def write_sample_data(out: Path | str, scenes: int = 0, tiff16: bool = True) -> Path:
    """Write the sample annotations into ``out`` (created if missing) and return it.

    Without ``scenes`` this is the repository's ``sample_data/``; ``scenes=N`` adds N
    training scenes under ``scenes/``. ``out/labels.txt`` lists the classes.
    ``tiff16=False`` leaves out the 16-bit grayscale TIFF (``segkit train`` wants one
    channel count and dtype across a dataset; the rest of the chain takes it).

    >>> import tempfile
    >>> root = write_sample_data(tempfile.mkdtemp(), scenes=2)
    >>> sorted(p.name for p in (root / "scenes").iterdir())
    ['cells_001.jpg', 'cells_001.json', 'cells_002.jpg', 'cells_002.json']
    """
    out = Path(out)
    # Rewriting the files of an earlier run: never through a link planted among them.
    links = [path for path in (out, *out.rglob("*")) if path.is_symlink()] if out.exists() else []
    if links:
        raise OptionError(
            f"{links[0]}: is a symbolic link; segkit never writes through links. Remove it"
        )
    out.mkdir(parents=True, exist_ok=True)
    _edge_cases(out, tiff16)
    if scenes:
        _scenes(out, scenes)
    (out / "labels.txt").write_text(LABELS, "utf-8")
    return out
