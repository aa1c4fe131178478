"""Generate segkit's bad-input corpus: one folder per defect, each a small real input.

Every case is written by code here, never by hand, so the corpus can be rebuilt and
reviewed as a diff. Tests build the case they need into a temporary folder
(``tests/test_corpus.py`` holds what segkit must answer to each); a person can write
the whole corpus out to look at it::

    python tests/corpus/make_corpus.py OUT_DIR     # every case, OUT_DIR/<case>/...
    python tests/corpus/make_corpus.py --index     # rewrite tests/corpus/INDEX.md

Each case folder holds what its command reads: ``annotations/`` (labelme JSON and
images) for ``convert``, ``dataset/`` (a VOC folder) for ``validate``/``split``/
``weights``, ``run/`` (a checkpoint) and ``images/`` for ``predict``/``export``.
Most cases also hold one good item, so a test can check that the good part is still
produced next to the error.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

if __package__ in (None, ""):  # run as a script: make the `tests` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.helpers_convert import INVERSE_ORIENTATION, encode, exif_bytes, gradient

#: The file a malicious pickle creates if anything ever unpickles it.
PICKLE_MARKER = "PWNED-by-pickle"
CLASSES = ("_background_", "cat", "dog")
SIZE = (12, 16)  # (height, width) of every picture
INDEX = Path(__file__).with_name("INDEX.md")


@dataclass(frozen=True)
class Case:
    """One defect: a name (its folder), the kind of input it breaks and what is wrong."""

    name: str
    kind: str
    defect: str
    build: Callable[[Path], None]


CASES: dict[str, Case] = {}


def case(kind: str, name: str, defect: str) -> Callable[[Callable[[Path], None]], Any]:
    def register(build: Callable[[Path], None]) -> Callable[[Path], None]:
        if name in CASES:
            raise ValueError(f"duplicate case {name}")
        CASES[name] = Case(name, kind, defect, build)
        return build

    return register


def build_case(name: str, root: Path) -> Path:
    """Write case ``name`` into ``root`` (created) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    CASES[name].build(root)
    return root


# --- small writers ---------------------------------------------------------------------


def picture(mode: str = "RGB") -> PIL.Image.Image:
    """A smooth, asymmetric picture (its orientation can be seen in every pixel)."""
    return gradient(SIZE[1], SIZE[0], mode)


def noise(seed: int, height: int = SIZE[0], width: int = SIZE[1]) -> PIL.Image.Image:
    """A picture unlike any other seed's (so no two dataset images look like duplicates)."""
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def shape(label: str, points: list[list[Any]], shape_type: str | None = "polygon") -> dict:
    out: dict[str, Any] = {"label": label, "points": points, "group_id": None, "flags": {}}
    if shape_type is not None:
        out["shape_type"] = shape_type
    return out


SQUARE = [[2, 2], [9, 2], [9, 8], [2, 8]]


def doc(shapes: list[dict], image: str, size: tuple[int, int] | None = SIZE) -> dict[str, Any]:
    """A labelme 5 document; ``size`` None leaves imageHeight/imageWidth out (labelme < 3)."""
    out: dict[str, Any] = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image}
    out["imageData"] = None
    if size is not None:
        out["imageHeight"], out["imageWidth"] = size
    return out


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_json(path: Path, value: Any) -> None:
    write(path, json.dumps(value, indent=1))


def sample(folder: Path, stem: str, shapes: list[dict] | None = None, **image: Any) -> None:
    """``folder/stem.json`` + ``folder/stem.jpg``: a good labelme sample unless told otherwise."""
    write(folder / f"{stem}.jpg", encode(picture(), "JPEG", **image))
    write_json(folder / f"{stem}.json", doc(shapes or [shape("cat", SQUARE)], f"{stem}.jpg"))


def annotations(root: Path) -> Path:
    """The case's labelme folder, holding one good sample (``good``) already."""
    folder = root / "annotations"
    sample(folder, "good")
    return folder


def bad_json(root: Path, text: str | bytes) -> None:
    """The labelme folder with ``bad.json`` holding ``text`` next to a good image."""
    folder = annotations(root)
    write(folder / "bad.jpg", encode(picture(), "JPEG"))
    write(folder / "bad.json", text)


def bad_doc(root: Path, value: Any) -> None:
    bad_json(root, json.dumps(value, indent=1))


def bad_shapes(root: Path, *shapes: dict, size: tuple[int, int] | None = SIZE) -> None:
    bad_doc(root, doc(list(shapes), "bad.jpg", size))


def bad_image(root: Path, data: bytes, name: str = "bad.jpg", size: tuple | None = SIZE) -> None:
    """The labelme folder with ``bad.json`` pointing at an image file holding ``data``."""
    folder = annotations(root)
    write(folder / name, data)
    write_json(folder / "bad.json", doc([shape("cat", SQUARE)], name, size))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A 1-bit grey PNG header claiming ``width``×``height`` with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


# --- datasets --------------------------------------------------------------------------

VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (3 * 252)
DATASET_IDS = ("a1", "a2", "a3", "a4", "a5", "a6")


def class_mask(index: int, height: int = SIZE[0], width: int = SIZE[1]) -> np.ndarray:
    """Both classes in every mask, placed a little differently each time."""
    mask = np.zeros((height, width), np.uint8)
    mask[1 + index % 3 : 6, 1:7] = 1
    mask[6:11, 8 + index % 4 : 15] = 2
    return mask


def palette_png(mask: np.ndarray) -> bytes:
    image = PIL.Image.fromarray(mask, mode="L").convert("P")
    image.putpalette(VOC_PALETTE)
    return encode(image, "PNG")


def dataset(root: Path, *, manifest: bool = False) -> Path:
    """A good VOC dataset: 6 samples, 2 classes, train/val split files."""
    folder = root / "dataset"
    for index, stem in enumerate(DATASET_IDS):
        write(folder / "JPEGImages" / f"{stem}.jpg", encode(noise(index), "JPEG"))
        write(folder / "SegmentationClass" / f"{stem}.png", palette_png(class_mask(index)))
    write(folder / "class_names.txt", "\n".join(CLASSES) + "\n")
    splits = folder / "ImageSets" / "Segmentation"
    write(splits / "train.txt", "".join(f"{s}\n" for s in DATASET_IDS[:4]))
    write(splits / "val.txt", "".join(f"{s}\n" for s in DATASET_IDS[4:]))
    if manifest:
        samples = [
            {"id": s, "image": f"JPEGImages/{s}.jpg", "class_mask": f"SegmentationClass/{s}.png"}
            for s in DATASET_IDS
        ]
        write_json(
            folder / "segkit.json",
            {
                "schema_version": 1,
                "classes": list(CLASSES),
                "ignore_index": 255,
                "samples": samples,
            },
        )
    return folder


# --- checkpoints -----------------------------------------------------------------------


def checkpoint(folder: Path, architecture: str = "unet-tiny", **kwargs: Any) -> Path:
    """A run folder ``folder`` with a random-initialised tiny checkpoint ``checkpoints/best``."""
    import torch

    from segkit.checkpoint import save_checkpoint
    from segkit.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(architecture, 3, len(CLASSES), base_channels=4, **kwargs)
    save_checkpoint(folder / "checkpoints" / "best", model, classes=list(CLASSES))
    write(folder / "config.json", "{}")
    return folder / "checkpoints" / "best"


def images(root: Path) -> None:
    write(root / "images" / "new.png", encode(picture(), "PNG"))


def truncate(path: Path, keep: int | None = None) -> None:
    """Cut ``path`` to ``keep`` bytes (default: half), as a copy that died would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


def append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(f"{line}\n")


def edit_manifest(root: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """A dataset whose segkit.json was changed by ``edit`` (by hand, as it were)."""
    path = dataset(root, manifest=True) / "segkit.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    write_json(path, data)


def edit_sidecar(best: Path, **changes: Any) -> None:
    sidecar = best.with_name(best.name + ".json")
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    data.update(changes)
    write_json(sidecar, data)


class _Payload:
    """Unpickling this creates the marker file: the proof that something unpickled it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": _Payload(str(marker))}, protocol=2)


# --- labelme JSON ------------------------------------------------------------------------


@case("labelme", "json-truncated", "JSON cut off mid-file (labelme crashed while saving)")
def _(root: Path) -> None:
    bad_json(root, json.dumps(doc([shape("cat", SQUARE)], "bad.jpg"))[:70])


@case("labelme", "json-empty-file", "a zero-byte .json file")
def _(root: Path) -> None:
    bad_json(root, b"")


@case("labelme", "json-not-utf8", "JSON saved in Latin-1 (a label with an accent)")
def _(root: Path) -> None:
    bad_json(
        root,
        json.dumps(doc([shape("café", SQUARE)], "bad.jpg"), ensure_ascii=False).encode("latin-1"),
    )


@case("labelme", "json-utf8-bom", "UTF-8 JSON starting with a byte-order mark (Windows editors)")
def _(root: Path) -> None:
    bad_json(root, b"\xef\xbb\xbf" + json.dumps(doc([shape("cat", SQUARE)], "bad.jpg")).encode())


@case("labelme", "json-utf16", "JSON saved as UTF-16 with a byte-order mark")
def _(root: Path) -> None:
    bad_json(root, json.dumps(doc([shape("cat", SQUARE)], "bad.jpg")).encode("utf-16"))


@case("labelme", "json-top-level-list", "valid JSON whose top level is a list, not an object")
def _(root: Path) -> None:
    bad_doc(root, [doc([shape("cat", SQUARE)], "bad.jpg")])


@case("labelme", "json-no-shapes", "an object without a 'shapes' list (some other JSON file)")
def _(root: Path) -> None:
    bad_doc(root, {"name": "settings", "imagePath": "bad.jpg"})


@case("labelme", "json-no-image", "neither 'imagePath' nor 'imageData'")
def _(root: Path) -> None:
    value = doc([shape("cat", SQUARE)], "bad.jpg")
    del value["imagePath"], value["imageData"]
    bad_doc(root, value)


@case("labelme", "json-deep-nesting", "100,000 nested lists (a parser stack bomb)")
def _(root: Path) -> None:
    bad_json(root, '{"shapes": ' + "[" * 100_000 + "]" * 100_000 + "}")


@case("labelme", "points-strings", "points given as strings (a tool that wrote '\"2\"')")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [["2", "2"], ["9", "2"], ["9", "8"]]))


@case("labelme", "points-bool", "a point coordinate that is true (a bool is not a number)")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[2, 2], [9, True], [9, 8]]))


@case("labelme", "label-not-string", "a label that is a number")
def _(root: Path) -> None:
    bad_shapes(root, {**shape("cat", SQUARE), "label": 5})


@case("labelme", "label-empty", "a label that is an empty string")
def _(root: Path) -> None:
    bad_shapes(root, shape("  ", SQUARE))


@case("labelme", "label-newline", "a label with a line break (would break labels.txt)")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat\ndog", SQUARE))


@case("labelme", "group-id-string", "group_id given as a string")
def _(root: Path) -> None:
    bad_shapes(root, {**shape("cat", SQUARE), "group_id": "1"})


@case("labelme", "shape-not-object", "a shape that is a list instead of an object")
def _(root: Path) -> None:
    bad_shapes(root, [[2, 2], [9, 9]])  # type: ignore[arg-type]


@case("labelme", "points-nan", "a NaN coordinate (Python's json writes the NaN literal)")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[2, 2], [float("nan"), 2], [9, 8]]))


@case("labelme", "points-infinity", "an Infinity coordinate")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[2, 2], [9, float("-inf")], [9, 8]]))


@case("labelme", "points-huge", "a coordinate of 1e300 (far outside any image)")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[2, 2], [1e300, 2], [9, 8]], "polygon"))


@case("labelme", "points-huge-integer", "a 400-digit integer coordinate (too large for a float)")
def _(root: Path) -> None:
    text = json.dumps(doc([shape("cat", [[2, 2], [7, 2], [9, 8]])], "bad.jpg"))
    bad_json(root, text.replace("[7, 2]", f"[{10**400}, 2]"))


@case("labelme", "circle-huge-radius", "a circle whose edge point lies 10^7 px away")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[5, 5], [1e7, 5]], "circle"))


@case("labelme", "polygon-self-intersecting", "a bow-tie polygon whose edges cross")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[1, 1], [14, 10], [14, 1], [1, 10]]))


@case("labelme", "polygon-zero-area", "a polygon whose points all lie on one line")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[1, 5], [7, 5], [14, 5]]))


@case("labelme", "polygon-duplicate-points", "a polygon of one point repeated three times")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[4, 4], [4, 4], [4, 4]]))


@case("labelme", "polygon-too-few-points", "a polygon with only two points")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[1, 1], [9, 9]]))


@case("labelme", "rectangle-three-points", "a rectangle with three points")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", [[1, 1], [9, 9], [3, 3]], "rectangle"))


@case("labelme", "shapes-empty", "a file with an empty shapes list (an unlabelled image)")
def _(root: Path) -> None:
    bad_shapes(root)


@case("labelme", "shape-type-unknown", "an unknown shape_type ('ellipse')")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", SQUARE, "ellipse"))


@case("labelme", "mask-not-png", "a mask shape whose 'mask' is base64 of text, not a PNG")
def _(root: Path) -> None:
    text = base64.b64encode(b"not a png").decode()
    bad_shapes(root, {**shape("cat", [[1, 1], [5, 5]], "mask"), "mask": text})


@case("labelme", "mask-bomb", "a mask shape whose PNG header claims 60000×60000 pixels")
def _(root: Path) -> None:
    text = base64.b64encode(bomb_png(60_000, 60_000)).decode()
    bad_shapes(root, {**shape("cat", [[1, 1], [5, 5]], "mask"), "mask": text})


@case("labelme", "legacy-no-shape-type", "labelme 3 file: shapes without shape_type (polygons)")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", SQUARE, None))


@case("labelme", "legacy-no-size", "labelme 2 file: no imageHeight/imageWidth")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", SQUARE), size=None)


@case("labelme", "size-mismatch", "imageHeight/imageWidth disagree with the image")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", SQUARE), size=(SIZE[0] + 1, SIZE[1]))


@case("labelme", "size-negative", "a negative imageWidth")
def _(root: Path) -> None:
    bad_shapes(root, shape("cat", SQUARE), size=(SIZE[0], -SIZE[1]))


@case("labelme", "image-path-missing", "imagePath names a file that does not exist")
def _(root: Path) -> None:
    folder = annotations(root)
    write_json(folder / "bad.json", doc([shape("cat", SQUARE)], "gone.jpg"))


@case("labelme", "image-data-bad-base64", "imageData that is not base64")
def _(root: Path) -> None:
    value = doc([shape("cat", SQUARE)], "bad.jpg")
    value["imageData"] = "@@@ not base64 @@@"
    bad_doc(root, value)


@case("labelme", "image-data-empty", "imageData that is an empty string")
def _(root: Path) -> None:
    value = doc([shape("cat", SQUARE)], "bad.jpg")
    value["imageData"] = ""
    bad_doc(root, value)


@case("labelme", "image-path-folder", "imagePath that names a folder")
def _(root: Path) -> None:
    folder = annotations(root)
    (folder / "bad.jpg").mkdir()
    write_json(folder / "bad.json", doc([shape("cat", SQUARE)], "bad.jpg"))


# --- images ------------------------------------------------------------------------------


@case("image", "image-truncated", "a JPEG cut off half-way (an interrupted copy)")
def _(root: Path) -> None:
    data = encode(picture(), "JPEG")
    bad_image(root, data[: len(data) // 2])


@case("image", "image-zero-byte", "a zero-byte image file")
def _(root: Path) -> None:
    bad_image(root, b"")


@case("image", "image-not-an-image", "a text file named .png")
def _(root: Path) -> None:
    bad_image(root, b"this is not an image\n", "bad.png")


@case("image", "image-wrong-extension", "PNG bytes in a file named .jpg")
def _(root: Path) -> None:
    bad_image(root, encode(picture(), "PNG"))


@case("image", "image-cmyk", "a CMYK JPEG (print workflows)")
def _(root: Path) -> None:
    bad_image(root, encode(picture("CMYK"), "JPEG"))


@case("image", "image-palette-alpha", "a palette PNG with a transparent colour")
def _(root: Path) -> None:
    image = picture().quantize(8)
    bad_image(root, encode(image, "PNG", transparency=0), "bad.png")


@case("image", "image-bomb", "a 60000×60000 PNG header in a tiny file (decompression bomb)")
def _(root: Path) -> None:
    bad_image(root, bomb_png(60_000, 60_000), "bad.png", size=None)


@case("image", "image-data-bomb", "a decompression-bomb PNG header embedded as imageData")
def _(root: Path) -> None:
    value = doc([shape("cat", SQUARE)], "bad.png", size=None)
    value["imageData"] = base64.b64encode(bomb_png(60_000, 60_000)).decode()
    bad_doc(root, value)


@case("image", "image-animated-gif", "an animated GIF (labelme shows its first frame)")
def _(root: Path) -> None:
    frames = [picture(), picture().transpose(PIL.Image.Transpose.FLIP_TOP_BOTTOM)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    bad_image(root, buffer.getvalue(), "bad.gif")


@case("image", "exif-size-stored-frame", "EXIF orientation 6, size declared in the stored frame")
def _(root: Path) -> None:
    stored = picture().transpose(PIL.Image.Transpose.ROTATE_90)
    bad_image(root, encode(stored, "JPEG", exif=exif_bytes(6)), size=(stored.height, stored.width))


def _oriented(orientation: int) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        display = picture()
        stored = display
        for op in INVERSE_ORIENTATION[orientation]:
            stored = stored.transpose(op)
        # labelme's points and size are in the display frame.
        bad_image(root, encode(stored, "JPEG", quality=95, exif=exif_bytes(orientation)))

    return build


for _orientation in range(2, 9):
    case(
        "image",
        f"exif-orientation-{_orientation}",
        f"a JPEG with EXIF orientation {_orientation}; points in labelme's display frame",
    )(_oriented(_orientation))


# --- datasets ------------------------------------------------------------------------------


@case("dataset", "dataset-size-mismatch", "a class mask smaller than its image")
def _(root: Path) -> None:
    folder = dataset(root)
    small = class_mask(1, SIZE[0] - 2, SIZE[1])
    write(folder / "SegmentationClass" / "a2.png", palette_png(small))


@case("dataset", "dataset-colour-mask", "an RGB colour mask (what an image editor saves)")
def _(root: Path) -> None:
    folder = dataset(root)
    rgb = PIL.Image.fromarray(class_mask(1), mode="L").convert("P")
    rgb.putpalette(VOC_PALETTE)
    write(folder / "SegmentationClass" / "a2.png", encode(rgb.convert("RGB"), "PNG"))


@case("dataset", "dataset-id-out-of-range", "a mask holding class id 7 with 3 classes")
def _(root: Path) -> None:
    folder = dataset(root)
    mask = class_mask(1)
    mask[0, 0] = 7
    write(folder / "SegmentationClass" / "a2.png", palette_png(mask))


@case("dataset", "dataset-missing-mask", "an image whose class mask is missing")
def _(root: Path) -> None:
    (dataset(root) / "SegmentationClass" / "a2.png").unlink()


@case("dataset", "dataset-orphan-mask", "a class mask without an image")
def _(root: Path) -> None:
    (dataset(root) / "JPEGImages" / "a2.jpg").unlink()


@case("dataset", "dataset-truncated-mask", "a class mask PNG cut off half-way")
def _(root: Path) -> None:
    truncate(dataset(root) / "SegmentationClass" / "a2.png")


@case("dataset", "dataset-zero-byte-image", "a zero-byte image in JPEGImages")
def _(root: Path) -> None:
    write(dataset(root) / "JPEGImages" / "a2.jpg", b"")


@case("dataset", "dataset-truncated-image", "an image in JPEGImages cut off half-way")
def _(root: Path) -> None:
    truncate(dataset(root) / "JPEGImages" / "a2.jpg")


@case("dataset", "split-unknown-id", "a split file naming an image that does not exist")
def _(root: Path) -> None:
    append_line(dataset(root) / "ImageSets" / "Segmentation" / "train.txt", "ghost")


@case("dataset", "split-binary", "a split file holding binary garbage (not UTF-8)")
def _(root: Path) -> None:
    write(dataset(root) / "ImageSets" / "Segmentation" / "val.txt", b"\xff\xfe\x00a5\n\x80\x81")


@case("dataset", "split-leak", "the same image in train and val")
def _(root: Path) -> None:
    append_line(dataset(root) / "ImageSets" / "Segmentation" / "val.txt", "a1")


@case("dataset", "manifest-broken-json", "segkit.json edited by hand, a trailing comma")
def _(root: Path) -> None:
    folder = dataset(root, manifest=True)
    text = (folder / "segkit.json").read_text(encoding="utf-8")
    write(folder / "segkit.json", text.replace('"ignore_index": 255', '"ignore_index": 255,,'))


@case("dataset", "manifest-wrong-types", "segkit.json edited by hand: classes is a string")
def _(root: Path) -> None:
    edit_manifest(root, lambda data: data.update(classes="cat,dog"))


@case("dataset", "manifest-ghost-sample", "segkit.json edited by hand: lists a removed sample")
def _(root: Path) -> None:
    ghost = {"id": "zz", "image": "JPEGImages/zz.jpg", "class_mask": "SegmentationClass/zz.png"}
    edit_manifest(root, lambda data: data["samples"].append(ghost))


@case("dataset", "manifest-future-schema", "segkit.json from a newer segkit (schema_version 99)")
def _(root: Path) -> None:
    edit_manifest(root, lambda data: data.update(schema_version=99))


# --- checkpoints ---------------------------------------------------------------------------


@case("checkpoint", "ckpt-truncated", "safetensors cut off half-way (a copy that died)")
def _(root: Path) -> None:
    images(root)
    best = checkpoint(root / "run")
    truncate(best.with_name("best.safetensors"), 300)


@case("checkpoint", "ckpt-truncated-no-hash", "truncated safetensors, sidecar without a hash")
def _(root: Path) -> None:
    images(root)
    best = checkpoint(root / "run")
    truncate(best.with_name("best.safetensors"), 300)
    edit_sidecar(best, tensors_sha256=None)


def other_sidecar(root: Path) -> Path:
    """The run's tensors next to the sidecar of a deeper model; returns the checkpoint."""
    images(root)
    best = checkpoint(root / "run")
    other = checkpoint(root / "other", depth=2)
    best.with_name("best.json").write_bytes(other.with_name("best.json").read_bytes())
    return best


@case("checkpoint", "ckpt-other-sidecar", "the sidecar of another model next to the tensors")
def _(root: Path) -> None:
    other_sidecar(root)


@case("checkpoint", "ckpt-other-sidecar-no-hash", "another model's sidecar, its hash removed")
def _(root: Path) -> None:
    edit_sidecar(other_sidecar(root), tensors_sha256=None)


@case("checkpoint", "ckpt-pickle", "a pickle that runs code when loaded, named best.safetensors")
def _(root: Path) -> None:
    images(root)
    best = checkpoint(root / "run")
    best.with_name("best.safetensors").write_bytes(evil_pickle(root / PICKLE_MARKER))
    edit_sidecar(best, tensors_sha256=None)


@case("checkpoint", "ckpt-pickle-pt", "a torch.save .pt pickle that runs code, given directly")
def _(root: Path) -> None:
    images(root)
    write(root / "model.pt", evil_pickle(root / PICKLE_MARKER))


@case("checkpoint", "encoder-weights-pickle", "--encoder-weights: a .pth pickle that runs code")
def _(root: Path) -> None:
    dataset(root)
    write(root / "resnet18.pth", evil_pickle(root / PICKLE_MARKER))


@case("checkpoint", "ckpt-sidecar-missing", "safetensors without its JSON sidecar")
def _(root: Path) -> None:
    images(root)
    checkpoint(root / "run").with_name("best.json").unlink()


@case("checkpoint", "ckpt-sidecar-broken", "a sidecar that is not JSON")
def _(root: Path) -> None:
    images(root)
    write(checkpoint(root / "run").with_name("best.json"), "{ architecture: unet")


@case("checkpoint", "ckpt-sidecar-unknown-model", "a sidecar naming a model segkit does not have")
def _(root: Path) -> None:
    images(root)
    edit_sidecar(checkpoint(root / "run"), architecture="segformer-b5")


@case("checkpoint", "ckpt-sidecar-future", "a sidecar from a newer segkit (schema_version 99)")
def _(root: Path) -> None:
    images(root)
    edit_sidecar(checkpoint(root / "run"), schema_version=99)


# --- the script ----------------------------------------------------------------------------


def index_text() -> str:
    """INDEX.md: every case, its kind and defect (a test keeps the file equal to this)."""
    lines = [
        "# The bad-input corpus",
        "",
        "Generated by `python tests/corpus/make_corpus.py --index`; do not edit by hand.",
        "`python tests/corpus/make_corpus.py OUT_DIR` writes every case out;",
        "`tests/test_corpus.py` states what segkit answers to each.",
        "",
        f"{len(CASES)} cases.",
        "",
        "| case | input | defect |",
        "|---|---|---|",
    ]
    lines += [f"| `{c.name}` | {c.kind} | {c.defect} |" for c in CASES.values()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--index"]:
        INDEX.write_text(index_text(), encoding="utf-8")
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    if out.exists() and any(out.iterdir()):
        print(f"error: {out}: folder is not empty; choose a new one", file=sys.stderr)
        return 1
    for name in CASES:
        build_case(name, out / name)
    print(f"wrote {len(CASES)} cases to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
