"""The bad-input corpus (tests/corpus/make_corpus.py) through the real CLI.

One table row per (case, command): the exit code, the ``error:`` line (it must name
the broken file and say what is wrong) or the validate finding, and what the command
still produced next to it. Every row also checks that no input changed (SHA-256 of
every file), that no temporary file is left, that nothing raised a traceback and that
the pickle payload never ran. The commands run in-process (``CliRunner``), so the 80-odd
rows take seconds; ``test_corpus_subprocess`` runs a few through a real process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from typer.testing import CliRunner, Result

from segkit.cli import app
from tests.corpus import make_corpus
from tests.corpus.make_corpus import CASES, PICKLE_MARKER, build_case

CASE, OUT = "{case}", "{out}"  # the case folder, and an output folder beside it
CONVERT = ("convert", f"{CASE}/annotations", "-o", OUT, "--workers", "1")
VALIDATE = ("validate", f"{CASE}/dataset", "--json", "--workers", "1")
SPLIT = ("split", f"{CASE}/dataset", "--test", "0", "--workers", "1")
WEIGHTS = ("weights", f"{CASE}/dataset", "--border", "--workers", "1")
PREDICT = ("predict", f"{CASE}/run", f"{CASE}/images", "-o", OUT, "--device", "cpu")
EXPORT = ("export", f"{CASE}/run/checkpoints/best.safetensors", "--onnx", "-o", f"{OUT}/m.onnx")
TRAIN = (
    "train", f"{CASE}/dataset", "-o", OUT, "--model", "unet-tiny", "--epochs", "1", "--crop", "8",
    "--batch-size", "2", "--workers", "0", "--device", "cpu",
)  # fmt: skip
REPORT = (
    "report", "--pred", f"{CASE}/dataset/SegmentationClass", "--gt", f"{CASE}/dataset",
    "--split", "all", "-o", OUT,
)  # fmt: skip
BAD, BAD_IMAGE = "annotations/bad.json", "annotations/bad.jpg"
GOOD_ONLY, BOTH = ("good",), ("bad", "good")


@dataclass(frozen=True)
class Row:
    """What one command answers to one corpus case."""

    case: str
    command: tuple[str, ...]
    code: int
    #: A substring of one ``error:`` line on stderr; that line must also name ``file``.
    error: str | None = None
    #: The file (relative to the case folder) the error line or finding names.
    file: str | None = None
    #: ``validate --json``: the check of an error finding naming ``file`` (relative to
    #: the dataset).
    finding: str | None = None
    #: Sample stems written to the output (SegmentationClass/ for convert, masks/ for
    #: predict); ``()`` asserts that no output folder was made at all.
    produced: tuple[str, ...] | None = None
    #: The command writes into its input on success (split, weights): skip the hash check.
    writes_input: bool = False

    @property
    def id(self) -> str:
        return f"{self.case}:{self.command[0]}"


def convert_error(case: str, error: str, file: str = BAD) -> Row:
    """A labelme or image defect: one line naming the file, the good sample still converted."""
    return Row(case, CONVERT, 1, error, file, produced=GOOD_ONLY)


def convert_ok(case: str) -> Row:
    return Row(case, CONVERT, 0, produced=BOTH)


def finding(case: str, check: str, file: str) -> Row:
    return Row(case, VALIDATE, 1, file=f"dataset/{file}", finding=check)


def fails(case: str, command: tuple[str, ...], error: str, file: str) -> Row:
    """A command that stops with one error line and writes nothing."""
    return Row(case, command, 1, error, file, produced=())


ROWS = [
    # --- labelme JSON -------------------------------------------------------------------
    convert_error("json-truncated", "not valid JSON (Expecting ':' delimiter: line 1"),
    convert_error("json-empty-file", "not valid JSON (Expecting value: line 1 column 1"),
    convert_error("json-not-utf8", "not UTF-8 text"),
    convert_ok("json-utf8-bom"),
    convert_ok("json-utf16"),
    convert_error("json-top-level-list", "not a labelme file (top level is a list)"),
    convert_error("json-no-shapes", "not a labelme file (no 'shapes' list)"),
    convert_error("json-no-image", "not a labelme file (no 'imagePath' or 'imageData')"),
    convert_error("json-deep-nesting", "not valid JSON (maximum recursion depth exceeded"),
    convert_error("points-strings", "shapes[0] (polygon 'cat'): points[0] must be [x, y] num"),
    convert_error("points-bool", "points[1] must be [x, y] numbers, got [9, True]"),
    convert_error("label-not-string", "shapes[0]: 'label' must be a non-empty string, got 5"),
    convert_error("label-empty", "shapes[0]: 'label' must be a non-empty string, got '  '"),
    convert_error("label-newline", "'label' 'cat\\ndog' contains a line break"),
    convert_error("group-id-string", "'group_id' must be an integer or null, got '1'"),
    convert_error("shape-not-object", "shapes[0]: shape must be an object"),
    convert_error("points-nan", "shapes[0] (polygon 'cat'): points[1] is not finite: [nan, 2]"),
    convert_error("points-infinity", "points[1] is not finite: [9, -inf]"),
    convert_error("points-huge", "points[1] (1e+300, 2) lies more than 1024 pixels outside"),
    convert_error("points-huge-integer", "points[1] is not finite: [1000000000...000"),
    convert_error("circle-huge-radius", "(circle 'cat'): points[1] (1e+07, 5) lies more than"),
    convert_ok("polygon-self-intersecting"),
    convert_ok("polygon-zero-area"),
    convert_ok("polygon-duplicate-points"),
    convert_error("polygon-too-few-points", "polygon needs at least 3 points, got 2"),
    convert_error("rectangle-three-points", "rectangle needs exactly 2 points, got 3"),
    convert_ok("shapes-empty"),
    convert_error("shape-type-unknown", "shapes[0]: unknown shape_type 'ellipse'; known: poly"),
    convert_error("mask-not-png", "(mask 'cat'): 'mask' is not a valid PNG bitmap"),
    convert_error("mask-bomb", "'mask' bitmap is 60000×60000, over the limit of 178956970"),
    convert_ok("legacy-no-shape-type"),
    convert_ok("legacy-no-size"),
    convert_error("size-mismatch", "imageHeight is 13 but the image"),
    convert_error("size-negative", "'imageWidth' must be a positive integer, got -16"),
    convert_error("image-path-missing", "image not found:", "annotations/gone.jpg"),
    convert_error("image-data-bad-base64", "'imageData' is not valid base64"),
    convert_error("image-data-empty", "image imageData is an empty file (0 bytes)"),
    convert_error("image-path-folder", "imagePath names a folder, not an image:", BAD_IMAGE),
    # --- images ---------------------------------------------------------------------------
    convert_error("image-truncated", "cannot decode image", BAD_IMAGE),
    convert_error("image-zero-byte", "is an empty file (0 bytes)", BAD_IMAGE),
    convert_error(
        "image-not-an-image", "not an image format Pillow can read", "annotations/bad.png"
    ),
    convert_ok("image-wrong-extension"),
    convert_ok("image-cmyk"),
    convert_ok("image-palette-alpha"),
    convert_error(
        "image-bomb",
        "is 60000×60000 = 3600000000 pixels, over the limit of 178956970 (raise --max-pixels",
        "annotations/bad.png",
    ),
    convert_error("image-data-bomb", "image imageData is 60000×60000 = 3600000000 pixels"),
    convert_ok("image-animated-gif"),
    convert_error("exif-size-stored-frame", "imageHeight is 16 but the image", BAD_IMAGE),
    *(convert_ok(f"exif-orientation-{n}") for n in range(2, 9)),
    # predict reads images too: the bad one is skipped with a line, the good one predicted.
    *(
        Row(
            name,
            (
                "predict",
                "{run}",
                f"{CASE}/annotations/good.jpg",
                f"{CASE}/{file}",
                "-o",
                OUT,
                "--device",
                "cpu",
            ),
            1,
            error,
            file,
            produced=GOOD_ONLY,
        )
        for name, file, error in (
            ("image-truncated", BAD_IMAGE, "cannot decode image (Truncated File Read); skipped"),
            ("image-zero-byte", BAD_IMAGE, "image is an empty file (0 bytes); skipped"),
            ("image-not-an-image", "annotations/bad.png", "not an image format Pillow can read"),
            ("image-bomb", "annotations/bad.png", "over the limit of 178956970 (cut it into"),
        )
    ),
    # --- datasets -------------------------------------------------------------------------
    finding("dataset-size-mismatch", "size-mismatch", "SegmentationClass/a2.png"),
    fails(
        "dataset-size-mismatch",
        TRAIN,
        "mask is 16×10 but the image is 16×12",
        "dataset/SegmentationClass/a2.png",
    ),
    # split reads neither images nor ids, weights no images: both accept what they
    # cannot see (validate and train refuse it).
    Row("dataset-size-mismatch", SPLIT, 0, writes_input=True),
    Row("dataset-size-mismatch", WEIGHTS, 0, writes_input=True),
    Row("dataset-id-out-of-range", SPLIT, 0, writes_input=True),
    finding("dataset-colour-mask", "rgb-mask", "SegmentationClass/a2.png"),
    fails(
        "dataset-colour-mask",
        SPLIT,
        "class mask is an RGB colour image, not ids",
        "dataset/SegmentationClass/a2.png",
    ),
    fails(
        "dataset-colour-mask",
        WEIGHTS,
        "class mask is an RGB colour image, not ids",
        "dataset/SegmentationClass/a2.png",
    ),
    finding("dataset-id-out-of-range", "unknown-class-id", "SegmentationClass/a2.png"),
    fails(
        "dataset-id-out-of-range",
        WEIGHTS,
        "class id(s) 7 out of range 0..2",
        "dataset/SegmentationClass/a2.png",
    ),
    finding("dataset-missing-mask", "missing-mask", "JPEGImages/a2.jpg"),
    fails(
        "dataset-missing-mask",
        WEIGHTS,
        "no class mask for 1 image(s) of split 'train': a2",
        "dataset/SegmentationClass",
    ),
    fails(
        "dataset-missing-mask",
        TRAIN,
        "1 sample(s) unusable: a2: image or class mask missing",
        "dataset/ImageSets/Segmentation/train.txt",
    ),
    finding("dataset-orphan-mask", "missing-image", "SegmentationClass/a2.png"),
    finding("dataset-truncated-mask", "truncated", "SegmentationClass/a2.png"),
    fails(
        "dataset-truncated-mask",
        SPLIT,
        "cannot read mask (Truncated File Read)",
        "dataset/SegmentationClass/a2.png",
    ),
    fails(
        "dataset-truncated-mask",
        WEIGHTS,
        "cannot read mask (Truncated File Read)",
        "dataset/SegmentationClass/a2.png",
    ),
    fails(
        "dataset-truncated-mask",
        TRAIN,
        "cannot read mask (Truncated File Read)",
        "dataset/SegmentationClass/a2.png",
    ),
    finding("dataset-zero-byte-image", "empty-file", "JPEGImages/a2.jpg"),
    fails(
        "dataset-zero-byte-image",
        TRAIN,
        "cannot read image (not an image format Pillow",
        "dataset/JPEGImages/a2.jpg",
    ),
    fails(
        "dataset-zero-byte-image",
        REPORT,
        "cannot read image (not an image format Pillow",
        "dataset/JPEGImages/a2.jpg",
    ),
    finding("dataset-truncated-image", "truncated", "JPEGImages/a2.jpg"),
    fails(
        "dataset-truncated-image",
        TRAIN,
        "cannot read image (Truncated File Read)",
        "dataset/JPEGImages/a2.jpg",
    ),
    fails(
        "dataset-truncated-image",
        REPORT,
        "cannot read image (Truncated File Read)",
        "dataset/JPEGImages/a2.jpg",
    ),
    finding("split-unknown-id", "split-unknown-stem", "ImageSets/Segmentation/train.txt"),
    fails(
        "split-unknown-id",
        WEIGHTS,
        "1 id(s) not in the dataset: ghost",
        "dataset/ImageSets/Segmentation/train.txt",
    ),
    finding("split-binary", "unreadable", "ImageSets/Segmentation/val.txt"),
    fails(
        "split-binary",
        SPLIT,
        "split file is not UTF-8 text",
        "dataset/ImageSets/Segmentation/val.txt",
    ),
    finding("split-leak", "split-overlap", "ImageSets/Segmentation/val.txt"),
    fails(
        "split-leak",
        SPLIT,
        "'a1' is listed in both train and val",
        "dataset/ImageSets/Segmentation",
    ),
    *(
        fails(name, command, error, "dataset/segkit.json")
        for name, error in (
            ("manifest-broken-json", "not valid JSON (Expecting property name"),
            ("manifest-wrong-types", "key 'classes' missing or not a list"),
            ("manifest-future-schema", "schema_version 99 is newer than this segkit understands"),
        )
        for command in (VALIDATE, SPLIT, WEIGHTS)
    ),
    finding("manifest-ghost-sample", "manifest-missing-file", "JPEGImages/zz.jpg"),
    # --- checkpoints ----------------------------------------------------------------------
    *(
        fails(name, command, error, f"run/checkpoints/{file}")
        for name, file, error in (
            ("ckpt-truncated", "best.safetensors", "does not match its sidecar (SHA-256 differs)"),
            ("ckpt-truncated-no-hash", "best.safetensors", "not a readable safetensors file"),
            ("ckpt-other-sidecar", "best.safetensors", "does not match its sidecar (SHA-256"),
            ("ckpt-other-sidecar-no-hash", "best.safetensors", "weights do not fit 'unet-tiny'"),
            ("ckpt-pickle", "best.safetensors", "not a readable safetensors file"),
            ("ckpt-sidecar-missing", "best.json", "checkpoint metadata not found"),
            ("ckpt-sidecar-broken", "best.json", "not valid JSON"),
            ("ckpt-sidecar-unknown-model", "best.safetensors", "unknown model 'segformer-b5'"),
            ("ckpt-sidecar-future", "best.json", "schema_version 99 is newer than this segkit"),
        )
        for command in (PREDICT, EXPORT)
    ),
    fails(
        "ckpt-pickle-pt",
        ("predict", f"{CASE}/model.pt", f"{CASE}/images", "-o", OUT),
        "not a segkit checkpoint (no model.pt.safetensors beside it)",
        "model.pt",
    ),
    fails(
        "ckpt-pickle-pt",
        ("export", f"{CASE}/model.pt", "--onnx", "-o", f"{OUT}/m.onnx"),
        "checkpoint metadata not found",
        "model.pt.json",
    ),
    # The only stage that reads a user's pickle (torch.load(weights_only=True)); ~2 s for
    # building the ResNet-18 model the weights are checked against.
    fails(
        "encoder-weights-pickle",
        (*TRAIN[:5], "unet-r18", *TRAIN[6:], "--encoder-weights", f"{CASE}/resnet18.pth"),
        "refused: the pickle would load io.open",
        "resnet18.pth",
    ),
]


def test_every_case_has_a_row_and_there_are_40_defects() -> None:
    assert set(CASES) == {row.case for row in ROWS}
    assert len({row.id for row in ROWS}) == len(ROWS)
    assert len(CASES) >= 40


def test_index_is_generated() -> None:
    """INDEX.md lists the corpus as the script writes it (regenerate: --index)."""
    assert make_corpus.INDEX.read_text(encoding="utf-8") == make_corpus.index_text()


def hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a good tiny checkpoint, for the image rows of predict."""
    root = tmp_path_factory.mktemp("run")
    make_corpus.checkpoint(root)
    return root


def invoke(row: Row, case: Path, out: Path, run: Path | None = None) -> Result:
    fill = {CASE: str(case), OUT: str(out), "{run}": str(run)}
    args = []
    for arg in row.command:
        for placeholder, value in fill.items():
            arg = arg.replace(placeholder, value)
        args.append(arg)
    return CliRunner().invoke(app, args, catch_exceptions=True)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_corpus(row: Row, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    case, out = build_case(row.case, tmp_path / "case"), tmp_path / "out"
    run = request.getfixturevalue("good_run") if "{run}" in row.command else None
    before = hashes(case)

    result = invoke(row, case, out, run)

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == row.code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if row.error is not None:
        named = str(case / row.file)
        assert [line for line in errors if row.error in line and named in line], errors
    elif row.finding is not None:
        report = json.loads(result.stdout)
        found = {(f["severity"], f["check"], f["file"]) for f in report["findings"]}
        dataset_file = row.file.removeprefix("dataset/")
        assert ("error", row.finding, dataset_file) in found, found
    else:
        assert errors == []
    if row.produced == ():
        assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    elif row.produced is not None:
        folder = out / ("masks" if row.command[0] == "predict" else "SegmentationClass")
        assert sorted(p.stem for p in folder.iterdir()) == list(row.produced)
    if not (row.writes_input and row.code == 0):
        assert hashes(case) == before, "an input file changed"
    assert not [p for p in tmp_path.rglob("*.tmp")], "a temporary file was left behind"
    assert not (case / PICKLE_MARKER).exists(), "the pickle was unpickled"


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    """The marker checks above mean something: unpickling the payload does create it."""
    import pickle

    marker = tmp_path / PICKLE_MARKER
    pickle.loads(make_corpus.evil_pickle(marker))  # on purpose: a harmless payload
    assert marker.exists()


# --- what the conversions that succeed wrote --------------------------------------------


def read(path: Path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image)


def labelme_class_mask(annotation: Path) -> np.ndarray:
    """labelme's own rasterization of ``annotation`` (cat = 1), as its LabelFile reads it."""
    pytest.importorskip("labelme")
    try:
        from labelme._utils.shape import shapes_to_label
    except ImportError:
        from labelme.utils.shape import shapes_to_label
    data = json.loads(annotation.read_text(encoding="utf-8"))
    shapes = [
        {**s, "shape_type": s.get("shape_type") or "polygon", "mask": None, "other_data": {}}
        for s in data["shapes"]
    ]
    height, width = make_corpus.SIZE
    labels, _ = shapes_to_label((height, width), shapes, {"_background_": 0, "cat": 1})
    return labels.astype(np.uint8)


def check_like_labelme(case: Path, out: Path) -> None:
    expected = labelme_class_mask(case / "annotations" / "bad.json")
    np.testing.assert_array_equal(read(out / "SegmentationClass" / "bad.png"), expected)


def check_same_as_good(case: Path, out: Path) -> None:
    """The defect changes nothing: the same square, the same picture, as the good sample."""
    masks = out / "SegmentationClass"
    np.testing.assert_array_equal(read(masks / "bad.png"), read(masks / "good.png"))
    image = next((out / "JPEGImages").glob("bad.*"))
    pixels = read(image).astype(int)
    good = np.asarray(make_corpus.picture(), dtype=int)
    assert pixels.shape == good.shape  # the display frame: 12 high, 16 wide
    assert np.abs(pixels - good).mean() < 6  # JPEG noise, not a turned or flipped picture
    with PIL.Image.open(image) as opened:
        assert opened.getexif().get(0x0112, 1) == 1  # no orientation left to apply twice


def check_empty(case: Path, out: Path) -> None:
    assert not read(out / "SegmentationClass" / "bad.png").any()


def check_copied(case: Path, out: Path) -> None:
    """A CMYK JPEG needs no rotation, so its bytes are copied as they are."""
    copied = (out / "JPEGImages" / "bad.jpg").read_bytes()
    assert copied == (case / "annotations" / "bad.jpg").read_bytes()


def check_rgba_kept(case: Path, out: Path) -> None:
    with PIL.Image.open(case / "annotations" / "bad.png") as source:
        expected = np.asarray(source.convert("RGBA"))
    np.testing.assert_array_equal(read(out / "JPEGImages" / "bad.png"), expected)


def check_reencoded_jpeg(case: Path, out: Path) -> None:
    with PIL.Image.open(out / "JPEGImages" / "bad.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (16, 12))
    check_same_as_good(case, out)


def check_first_frame(case: Path, out: Path) -> None:
    with PIL.Image.open(case / "annotations" / "bad.gif") as source:
        expected = np.asarray(source.convert("RGB"))  # the first frame
    with PIL.Image.open(next((out / "JPEGImages").glob("bad.*"))) as image:
        assert getattr(image, "n_frames", 1) == 1
        got = np.asarray(image.convert("RGB"))
    assert got.shape == expected.shape and np.abs(got.astype(int) - expected).mean() < 6


CONVERTED = {
    "polygon-self-intersecting": check_like_labelme,
    "polygon-zero-area": check_like_labelme,
    "polygon-duplicate-points": check_like_labelme,
    "legacy-no-shape-type": check_like_labelme,
    "legacy-no-size": check_same_as_good,
    "shapes-empty": check_empty,
    "image-cmyk": check_copied,
    "image-palette-alpha": check_rgba_kept,
    "image-wrong-extension": check_reencoded_jpeg,
    "image-animated-gif": check_first_frame,
    "json-utf8-bom": check_same_as_good,
    "json-utf16": check_same_as_good,
    **{f"exif-orientation-{n}": check_same_as_good for n in range(2, 9)},
}


def test_every_successful_conversion_is_checked() -> None:
    succeeding = {row.case for row in ROWS if row.command == CONVERT and row.code == 0}
    assert succeeding == set(CONVERTED)


@pytest.mark.parametrize("name", CONVERTED)
def test_converted_output(name: str, tmp_path: Path) -> None:
    case, out = build_case(name, tmp_path / "case"), tmp_path / "out"
    row = Row(name, CONVERT, 0)
    assert invoke(row, case, out).exit_code == 0
    CONVERTED[name](case, out)


@pytest.mark.parametrize(
    "row",
    [row for row in ROWS if row.id in ("json-truncated:convert", "manifest-broken-json:validate")],
    ids=lambda row: row.id,
)
def test_corpus_subprocess(row: Row, tmp_path: Path) -> None:
    """Two rows through a real ``segkit`` process: its exit code, its stderr, its output."""
    case, out = build_case(row.case, tmp_path / "case"), tmp_path / "out"
    before = hashes(case)
    args = [arg.replace(CASE, str(case)).replace(OUT, str(out)) for arg in row.command]
    done = subprocess.run(
        [sys.executable, "-m", "segkit", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == row.code, done.stderr
    named = str(case / str(row.file))
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        line for line in done.stderr.splitlines() if row.error in line and named in line
    ]
    assert "Traceback" not in done.stderr
    produced = sorted(p.stem for p in (out / "SegmentationClass").glob("*")) or None
    assert produced == (list(row.produced) if row.produced else None)
    if "--json" in args:  # stdout is one JSON document, also when the command fails
        assert json.loads(done.stdout)["exit_code"] == row.code
    assert hashes(case) == before


# --- a folder another segkit process writes ---------------------------------------------

BUSY = {
    "convert": CONVERT,
    "split": SPLIT,
    "weights": WEIGHTS,
    "train": TRAIN,
    "report": REPORT,
    "predict": ("predict", "{run}", f"{CASE}/annotations", "-o", OUT, "--device", "cpu"),
}  # fmt: skip


@pytest.mark.parametrize("stage", BUSY)
def test_every_writing_stage_refuses_a_folder_being_written(
    stage: str, tmp_path: Path, good_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One writer per folder, for the model half too: refused at once, naming the writer."""
    import segkit.report.stage as report_stage
    from segkit.lock import folder_lock

    def too_late(*args: object) -> None:
        raise AssertionError("report scored the predictions before checking the lock")

    monkeypatch.setattr(report_stage, "build_report", too_late)

    case, out = tmp_path / "case", tmp_path / "out"
    make_corpus.annotations(case)
    make_corpus.dataset(case)
    target = case / "dataset" if stage in ("split", "weights") else out
    target.mkdir(exist_ok=True)
    with folder_lock(target):
        before = hashes(case)
        result = invoke(Row("busy", BUSY[stage], 1), case, out, good_run)
        assert result.exit_code == 1, result.output
        assert "another segkit process is writing here" in result.stderr
        assert f"pid {os.getpid()}" in result.stderr and str(target) in result.stderr
        assert hashes(case) == before
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_a_report_stopped_half_way_resumes_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder of an interrupted first report is the report's (its claim says so)."""
    import segkit.report.stage as report_stage

    make_corpus.dataset(tmp_path)
    command = (*BUSY["report"], "--worst", "0")  # no overlays: less to render twice
    out = tmp_path / "out"
    real_write, written = report_stage.atomic_write_bytes, []

    def stop_after_two(path: Path, data: bytes) -> None:
        if len(written) == 2:
            raise KeyboardInterrupt
        real_write(path, data)
        written.append(path.name)

    monkeypatch.setattr(report_stage, "atomic_write_bytes", stop_after_two)
    assert invoke(Row("stopped", command, 130), tmp_path, out).exit_code == 130
    assert len([p for p in out.rglob("*") if p.is_file() and p.name in written]) == 2
    monkeypatch.setattr(report_stage, "atomic_write_bytes", real_write)
    result = invoke(Row("resumed", command, 0), tmp_path, out)
    assert result.exit_code == 0, result.output
    assert (out / "report.json").is_file() and not list(out.glob(".segkit*"))


def test_reliability_md_names_tests_that_exist() -> None:
    """docs/reliability.md points at tests by file::name; each must exist."""
    root = Path(__file__).parent.parent
    text = (root / "docs" / "reliability.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(named) > 40
    assert f"generates {len(CASES)} defective inputs" in " ".join(text.split())
    missing = [
        f"{file}::{test}"
        for file, test in named
        if not re.search(rf"^def {test}\(", (root / file).read_text(encoding="utf-8"), re.M)
    ]
    assert missing == []
