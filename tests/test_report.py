"""`segkit report` end to end: prediction mode, run mode (a checkpoint saved with
segkit.checkpoint), --compare, --json, and every bad-input path."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers_convert import run

from segkit.checkpoint import save_checkpoint
from segkit.inference import image_to_tensor, predict_mask
from segkit.metrics import ConfusionMatrix, ObjectCounts
from segkit.models import build_model
from segkit.voc import voc_colormap, write_palette_png

CLASSES = ["_background_", "cell", 'we<b>ird & "name"']
H, W = 20, 24
IDS = ["a", "b", "c"]


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image RGB, class mask, instance mask): two touching cells and a class-2 block."""
    rng = np.random.default_rng(seed)
    cls = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    cls[2:10, 2:8] = cls[2:10, 8:14] = 1
    inst[2:10, 2:8], inst[2:10, 8:14] = 1, 2
    cls[12:18, 14 + seed : 20 + seed] = 2
    inst[12:18, 14 + seed : 20 + seed] = 3
    cls[0, :] = 255
    inst[0, :] = 255
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return image, cls, inst


def _write_dataset(
    root: Path, classes: list[str], splits: dict[str, str], instances: bool = True
) -> Path:
    """A dataset of the three scenes with the given class names and split files."""
    folders = ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"]
    for name in folders + (["SegmentationObject"] if instances else []):
        (root / name).mkdir(parents=True)
    (root / "class_names.txt").write_text("\n".join(classes) + "\n")
    for seed, sample_id in enumerate(IDS):
        image, cls, inst = _scene(seed)
        PIL.Image.fromarray(image).save(root / "JPEGImages" / f"{sample_id}.png")
        write_palette_png(root / "SegmentationClass" / f"{sample_id}.png", cls)
        if instances:
            write_palette_png(root / "SegmentationObject" / f"{sample_id}.png", inst)
    for split, text in splits.items():
        (root / f"ImageSets/Segmentation/{split}.txt").write_text(text)
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return _write_dataset(
        tmp_path / "dataset", CLASSES, {"val": "\n".join(IDS) + "\n", "train": "a\n"}
    )


def _predictions(tmp_path: Path, name: str = "pred") -> tuple[Path, dict[str, np.ndarray]]:
    """Predictions in the three accepted encodings: palette, 8-bit gray, RGB colours."""
    folder = tmp_path / name
    folder.mkdir()
    masks = {}
    for seed, sample_id in enumerate(IDS):
        _, cls, _ = _scene(seed)
        pred = np.where(cls == 255, 0, cls).astype(np.uint8)
        pred[2:10, 8] = 0 if seed == 0 else 1  # image a: the touching cells separated
        pred[15:18, :6] = 2  # a false class-2 object
        masks[sample_id] = pred
    write_palette_png(folder / "a.png", masks["a"])
    PIL.Image.fromarray(masks["b"], "L").save(folder / "b.png")
    PIL.Image.fromarray(voc_colormap(256)[masks["c"]]).save(folder / "c.png")
    return folder, masks


def _expected(dataset: Path, masks: dict[str, np.ndarray]) -> tuple[ConfusionMatrix, ObjectCounts]:
    cm, objects = ConfusionMatrix(3), ObjectCounts(3)
    for seed, sample_id in enumerate(IDS):
        _, cls, inst = _scene(seed)
        cm.update(cls, masks[sample_id])
        objects.update(cls, inst, masks[sample_id])
    return cm, objects


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_prediction_mode_writes_every_file_with_dataset_level_scores(tmp_path, dataset):
    pred, masks = _predictions(tmp_path)
    out = tmp_path / "report"
    result = run("report", "--pred", pred, "--gt", dataset, "-o", out, "--worst", "2")
    assert result.exit_code == 0, result.output
    assert _files(out) == {
        "report.json",
        "per_class.csv",
        "confusion_matrix.csv",
        "per_image.csv",
        "report.md",
        "confusion_matrix.png",
        "report.html",
        "overlays/001.png",
        "overlays/002.png",
    }
    report = json.loads((out / "report.json").read_text())
    cm, objects = _expected(dataset, masks)
    assert report["confusion"]["matrix"] == cm.matrix.tolist()
    assert report["pixel"]["mIoU"] == pytest.approx(cm.scores().miou)
    assert report["objects"]["counts"] == objects.to_dict()
    assert report["objects"]["counts"]["merges"][1] == 2  # b and c fuse the touching cells
    assert report["split"] == "val" and report["images"] == 3 and report["missing"] == []
    prov = report["provenance"]
    assert prov["mode"] == "predictions" and prov["segkit_version"] and prov["command"]
    with open(out / "per_class.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["class"] for r in rows] == CLASSES
    assert float(rows[1]["iou"]) == pytest.approx(cm.scores().iou[1])
    assert rows[1]["merges"] == "2"
    with open(out / "per_image.csv", newline="") as handle:
        per_image = list(csv.DictReader(handle))
    mious = [float(r["miou"]) for r in per_image]
    assert mious == sorted(mious)  # worst first
    # The terminal table: per-class rows, the summary, the row-normalised matrix.
    assert "mIoU" in result.output and "confusion matrix" in result.output
    assert 'we<b>ird & "name"' in result.output
    html = (out / "report.html").read_text()
    assert "we&lt;b&gt;ird &amp; &#34;name&#34;" in html and "<b>ird" not in html
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    md = (out / "report.md").read_text()
    assert "we\\<b\\>ird" in md


def test_json_prints_report_json(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    out = tmp_path / "r"
    result = run("report", "--pred", pred, "--gt", dataset, "-o", out, "--json", "--worst", "0")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((out / "report.json").read_text())
    assert not (out / "overlays").exists()


def test_default_output_is_next_to_the_predictions(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    assert run("report", "--pred", pred, "--gt", dataset, "--worst", "0").exit_code == 0
    assert (tmp_path / "pred-report" / "report.json").is_file()


def test_class_subset_and_background_exclusion_change_only_the_means(tmp_path, dataset):
    pred, masks = _predictions(tmp_path)
    out = tmp_path / "r"
    args = (
        "report",
        "--pred",
        pred,
        "--gt",
        dataset,
        "-o",
        out,
        "--worst",
        "0",
        "--exclude-background",
    )
    assert run(*args).exit_code == 0
    report = json.loads((out / "report.json").read_text())
    cm, _ = _expected(dataset, masks)
    assert report["pixel"]["classes_in_means"] == [1, 2]
    assert report["pixel"]["mIoU"] == pytest.approx(np.mean(cm.scores().iou[1:]))
    assert run(*args[:-1], "--classes", "cell", "--force").exit_code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pixel"]["mIoU"] == pytest.approx(cm.scores().iou[1])


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("breakage", "fragment"),
    [
        ("missing", "b.png: prediction missing for id 'b'"),
        ("extra", "zzz.png: extra file, no id 'zzz' in split val"),
        ("size", "b.png: size 23x20 differs from the ground truth's 24x20"),
        ("ids", "b.png: 1 predicted pixel(s) hold ids outside 0..2 (found 7)"),
        ("unreadable", "b.png: cannot read PNG"),
        ("colour", "c.png: RGB mask holds colour (1, 2, 3)"),
    ],
)
def test_bad_predictions_one_line_each_and_nothing_written(tmp_path, dataset, breakage, fragment):
    pred, masks = _predictions(tmp_path)
    if breakage == "missing":
        (pred / "b.png").unlink()
    elif breakage == "extra":
        write_palette_png(pred / "zzz.png", masks["a"])
    elif breakage == "size":
        write_palette_png(pred / "b.png", masks["b"][:, :23])
    elif breakage == "ids":
        bad = masks["b"].copy()
        bad[5, 5] = 7
        write_palette_png(pred / "b.png", bad)
    elif breakage == "unreadable":
        (pred / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    elif breakage == "colour":
        rgb = voc_colormap(256)[masks["c"]]
        rgb[3, 3] = (1, 2, 3)
        PIL.Image.fromarray(rgb).save(pred / "c.png")
    before = {p: p.read_bytes() for p in pred.iterdir()}
    out = tmp_path / "out"
    result = run("report", "--pred", pred, "--gt", dataset, "-o", out)
    assert result.exit_code == 1
    lines = _error_lines(result)
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not out.exists()
    assert {p: p.read_bytes() for p in pred.iterdir()} == before


def test_several_problems_are_all_reported(tmp_path, dataset):
    pred, masks = _predictions(tmp_path)
    (pred / "a.png").unlink()
    write_palette_png(pred / "b.png", masks["b"][:5])
    result = run("report", "--pred", pred, "--gt", dataset, "-o", tmp_path / "out")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "a.png: prediction missing" in text and "b.png: size" in text


def test_allow_missing_scores_the_rest_and_says_how_many(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    (pred / "c.png").unlink()
    out = tmp_path / "r"
    result = run(
        "report", "--pred", pred, "--gt", dataset, "-o", out, "--allow-missing", "--worst", "0"
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == ["c"] and report["images"] == 2
    assert "1 prediction(s) missing" in result.output


def test_refuses_a_foreign_non_empty_output_folder(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run("report", "--pred", pred, "--gt", dataset, "-o", out)
    # A usage problem (choose another -o or --force), exit 2 like `segkit train`'s refusal.
    assert result.exit_code == 2 and "holds no report.json" in result.output
    assert run("report", "--pred", pred, "--gt", dataset, "-o", out / "notes.txt").exit_code == 2
    assert run("report", "--pred", pred, "--gt", dataset, "-o", out, "--force").exit_code == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_option_errors(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    assert "needs --gt" in run("report", "--pred", pred).output
    assert "give a RUN folder" in run("report").output
    result = run("report", "--pred", pred, "--gt", dataset, "--classes", "dog")
    assert result.exit_code == 2 and "unknown class 'dog'" in result.output


def _make_run(tmp_path: Path, dataset: Path, seed: int, name: str) -> Path:
    torch.manual_seed(seed)
    model = build_model("unet-tiny", 3, 3, base_channels=2, depth=2)
    folder = tmp_path / name
    norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    save_checkpoint(folder / "checkpoints" / "best", model, classes=CLASSES, normalization=norm)
    save_checkpoint(folder / "checkpoints" / "last", model, classes=CLASSES, normalization=norm)
    (folder / "config.json").write_text(json.dumps({"dataset": str(dataset)}))
    return folder


def test_run_mode_scores_the_checkpoint_through_inference(tmp_path, dataset):
    run_dir = _make_run(tmp_path, dataset, 0, "run")
    result = run("report", run_dir, "--tile", "16", "--overlap", "0.5", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report" / "report.json").read_text())
    # The same model, whole pipeline by hand: same inference, same matrix.
    from segkit.checkpoint import load_checkpoint
    from segkit.inference import InferenceOptions

    loaded = load_checkpoint(run_dir / "checkpoints" / "best")
    cm = ConfusionMatrix(3)
    for seed, _ in enumerate(IDS):
        image, cls, _ = _scene(seed)
        tensor = image_to_tensor(image, loaded.meta.normalization)
        options = InferenceOptions(tile=16, overlap=0.5)
        cm.update(cls, predict_mask(loaded.model, tensor, options).numpy())
    assert report["confusion"]["matrix"] == cm.matrix.tolist()
    checkpoint = report["provenance"]["checkpoint"]
    assert checkpoint["name"] == "best" and len(checkpoint["sha256"]) == 64
    assert report["provenance"]["inference"]["tile"] == 16


def test_run_mode_errors(tmp_path, dataset):
    run_dir = _make_run(tmp_path, dataset, 0, "run")
    (run_dir / "checkpoints" / "last.safetensors").unlink()
    result = run("report", run_dir, "--checkpoint", "last", "--device", "cpu")
    assert result.exit_code == 1 and "last.safetensors: checkpoint tensors not found" in " ".join(
        result.output.split()
    )
    (run_dir / "config.json").write_text("{}")
    result = run("report", run_dir, "--device", "cpu")
    assert result.exit_code == 1 and "no 'dataset' path" in result.output
    assert run("report", run_dir, "--gt", dataset, "--device", "cpu").exit_code == 0


def test_compare_writes_and_prints_per_class_deltas(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    a, b = tmp_path / "ra", tmp_path / "rb"
    assert run("report", "--pred", pred, "--gt", dataset, "-o", a, "--worst", "0").exit_code == 0
    run_dir = _make_run(tmp_path, dataset, 1, "run")
    assert run("report", run_dir, "--device", "cpu", "-o", b, "--worst", "0").exit_code == 0
    # The real command line, as a user types it.
    cmd = [
        sys.executable,
        "-c",
        "from segkit.cli import main; main()",
        "report",
        "--compare",
        str(a),
        str(b / "report.json"),
        "-o",
        str(tmp_path / "cmp"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Δ iou" in done.stdout
    deltas = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    ra = json.loads((a / "report.json").read_text())
    rb = json.loads((b / "report.json").read_text())
    for row, pa, pb in zip(
        deltas["per_class"], ra["pixel"]["per_class"], rb["pixel"]["per_class"], strict=True
    ):
        if pa["iou"] is not None and pb["iou"] is not None:
            assert row["iou_delta"] == pytest.approx(pb["iou"] - pa["iou"])
    assert deltas["summary"]["mIoU"]["delta"] == pytest.approx(
        rb["pixel"]["mIoU"] - ra["pixel"]["mIoU"]
    )
    assert (tmp_path / "cmp" / "compare.csv").read_text().startswith("class,iou_a,iou_b")
    result = run("report", "--compare", a, tmp_path / "nowhere")
    assert result.exit_code == 2 and "report not found" in result.output
    (tmp_path / "bogus.json").write_text("{}")
    result = run("report", "--compare", a, tmp_path / "bogus.json")
    assert result.exit_code == 1 and "not a segkit report" in result.output


def test_python_api_matches_the_files(tmp_path, dataset):
    from segkit.report import ReportOptions, report

    pred, _ = _predictions(tmp_path)
    options = ReportOptions(mode="predictions", gt=dataset, worst=0)
    summary = report(pred, tmp_path / "api", options)
    assert summary.output == tmp_path / "api"
    assert summary.to_dict() == json.loads((tmp_path / "api" / "report.json").read_text())


def test_run_mode_on_16_bit_grayscale_images(tmp_path, dataset):
    for seed, sample_id in enumerate(IDS):
        gray = np.arange(H * W, dtype=np.uint16).reshape(H, W) * (seed + 1) * 100
        PIL.Image.fromarray(gray).save(dataset / "JPEGImages" / f"{sample_id}.png")
    torch.manual_seed(0)
    model = build_model("unet-tiny", 1, 3, base_channels=2, depth=2)
    run_dir = tmp_path / "gray-run"
    save_checkpoint(run_dir / "checkpoints" / "best", model, classes=CLASSES)
    (run_dir / "config.json").write_text(json.dumps({"dataset": str(dataset)}))
    result = run("report", run_dir, "--device", "cpu", "--worst", "1")
    assert result.exit_code == 0, result.output
    assert (run_dir / "report" / "overlays" / "001.png").is_file()
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert (
        report["images"] == 3 and report["provenance"]["checkpoint"]["architecture"] == "unet-tiny"
    )


def test_rerun_replaces_its_own_files_only(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    out = tmp_path / "r"
    assert run("report", "--pred", pred, "--gt", dataset, "-o", out, "--worst", "2").exit_code == 0
    (out / "overlays" / "mine.png").write_bytes(b"user's")
    assert run("report", "--pred", pred, "--gt", dataset, "-o", out, "--worst", "1").exit_code == 0
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["001.png", "mine.png"]
    report = json.loads((out / "report.json").read_text())
    assert "overlays/001.png" in report["files"] and "overlays/002.png" not in report["files"]
    assert not list(out.glob(".segkit*"))  # lock and claim gone


def test_a_user_file_where_the_report_writes_is_never_replaced(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    result = run("report", "--pred", pred, "--gt", dataset, "-o", out, "--force")
    assert result.exit_code == 1 and "report.md not written by segkit" in result.output
    assert (out / "report.md").read_text() == "my notes" and not (out / "report.json").exists()


def test_scoring_predictions_never_imports_torch(tmp_path, dataset):
    """The metrics core and the report tables are numpy-only (DESIGN's import rule): a
    neutral scorer of masks made by other tools does not load torch."""
    pred, _ = _predictions(tmp_path)
    code = (
        "import sys\n"
        "import segkit.metrics, segkit.report.tables\n"
        "from segkit.report import ReportOptions, report\n"
        f"report({str(pred)!r}, {str(tmp_path / 'r')!r},"
        f" ReportOptions(mode='predictions', gt={str(dataset)!r}, worst=0))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "report.json").is_file()


def test_a_split_id_without_sample_is_one_line(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    (dataset / "ImageSets/Segmentation/val.txt").write_text("a\nb\nc\nghost\n")
    result = run("report", "--pred", pred, "--gt", dataset, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "the split lists 'ghost', which is not in the dataset" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_report_on_a_run_that_segkit_train_wrote(tmp_path):
    """train → report through the real CLI: the run folder's config and checkpoints."""
    from helpers_train import make_voc

    voc = make_voc(tmp_path / "voc", n_train=4, n_val=2, size=24)
    run_dir = tmp_path / "run"
    trained = run(
        "train",
        voc,
        "-o",
        run_dir,
        "--model",
        "unet-tiny",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--quiet",
    )
    assert trained.exit_code == 0, trained.output
    for checkpoint in ("best", "last"):
        result = run(
            "report",
            run_dir,
            "--checkpoint",
            checkpoint,
            "--device",
            "cpu",
            "--worst",
            "1",
            "-o",
            tmp_path / checkpoint,
        )
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / checkpoint / "report.json").read_text())
        assert report["split"] == "val" and report["images"] == 2
        assert report["provenance"]["dataset"] == str(voc)
        assert report["provenance"]["checkpoint"]["name"] == checkpoint
        assert sum(map(sum, report["confusion"]["matrix"])) == 2 * 24 * 24


def test_json_failure_is_one_document_with_a_line_per_problem(tmp_path, dataset):
    pred, masks = _predictions(tmp_path)
    (pred / "a.png").unlink()
    write_palette_png(pred / "b.png", masks["b"][:5])
    result = run("report", "--pred", pred, "--gt", dataset, "-o", tmp_path / "o", "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False and len(document["errors"]) == 2
    assert [line[7:] for line in result.stderr.splitlines()] == document["errors"]
    missing = run("report", "--pred", tmp_path / "nope", "--gt", dataset, "--json")
    assert missing.exit_code == 2 and "predictions folder not found" in missing.stderr


def test_connected_component_objects_are_explained_everywhere(tmp_path, dataset):
    """A perfect prediction merges the touching cells; the report says why."""
    perfect = tmp_path / "perfect"
    perfect.mkdir()
    for seed, sample_id in enumerate(IDS):
        _, cls, _ = _scene(seed)
        write_palette_png(perfect / f"{sample_id}.png", np.where(cls == 255, 0, cls))
    out = tmp_path / "out"
    result = run("report", "--pred", perfect, "--gt", dataset, "-o", out, "--worst", "0")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["pixel"]["mIoU"] == pytest.approx(1.0)
    cells = next(r for r in report["objects"]["scores"]["per_class"] if r["id"] == 1)
    assert cells["recall"] < 1 and cells["merges"] == len(IDS)
    flat = " ".join(result.output.split())
    assert "connected components" in flat and "touch" in flat
    assert "connected components" in " ".join((out / "report.md").read_text().split())
    assert "connected components" in (out / "report.html").read_text()
    # Without instance masks there are no object scores and no footnote.
    bare = tmp_path / "bare"
    shutil.copytree(dataset, bare, ignore=shutil.ignore_patterns("SegmentationObject"))
    result = run("report", "--pred", perfect, "--gt", bare, "-o", tmp_path / "o2", "--worst", "0")
    assert result.exit_code == 0 and "connected components" not in result.output
    assert "connected components" not in (tmp_path / "o2" / "report.md").read_text()


@pytest.mark.parametrize("as_json", [False, True])
def test_compare_with_one_path_is_a_usage_error(tmp_path, dataset, as_json):
    pred, _ = _predictions(tmp_path)
    a = tmp_path / "ra"
    assert run("report", "--pred", pred, "--gt", dataset, "-o", a, "--worst", "0").exit_code == 0
    args = ["report", "--compare", a, "--json"] if as_json else ["report", "--compare", a, "-o", a]
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "--compare takes two report" in result.output and "not found" not in result.output
    assert not (a / "compare.json").exists()


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command line (notes reach stderr only through ``segkit.cli.main``)."""
    cmd = [sys.executable, "-m", "segkit", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _other_dataset(tmp_path: Path, classes: list[str], name: str) -> Path:
    """A second dataset: same scenes, other class names, only a test split."""
    return _write_dataset(tmp_path / name, classes, {"test": "\n".join(IDS) + "\n"}, False)


def test_compare_matches_classes_by_name_and_says_what_differs(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    a, b, c = tmp_path / "ra", tmp_path / "rb", tmp_path / "rc"
    assert run("report", "--pred", pred, "--gt", dataset, "-o", a, "--worst", "0").exit_code == 0
    # B: another dataset and split sharing only the class "cell" with A.
    other = _other_dataset(tmp_path, ["sky", "cell", "tree"], "other")
    done = run("report", "--pred", pred, "--gt", other, "--split", "test", "-o", b, "--worst", "0")
    assert done.exit_code == 0, done.output
    result = _cli("report", "--compare", a, b, "-o", tmp_path / "cmp")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert any("different datasets" in n for n in notes), result.stderr
    assert any("different splits (A: val, B: test)" in n for n in notes), result.stderr
    deltas = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    # Class ids differ (B's "cell" is id 2): rows are matched by name.
    assert [row["class"] for row in deltas["per_class"]] == ["_background_", "cell"]
    assert deltas["classes"]["only_a"] == ['we<b>ird & "name"']
    assert deltas["classes"]["only_b"] == ["sky", "tree"]
    assert deltas["reports"]["a"]["split"] == "val" and deltas["reports"]["b"]["split"] == "test"
    assert deltas["reports"]["a"]["dataset"] == str(dataset)
    assert deltas["reports"]["b"]["dataset"] == str(other)
    assert deltas["reports"]["b"]["provenance"]["mode"] == "predictions"
    ra, rb = (json.loads((r / "report.json").read_text()) for r in (a, b))
    row = deltas["per_class"][1]
    assert row["iou_delta"] == pytest.approx(
        rb["pixel"]["per_class"][2]["iou"] - ra["pixel"]["per_class"][1]["iou"]
    )
    # The like-for-like headline: mean IoU of background and cell, scored in both.
    shared_a = [ra["pixel"]["per_class"][i]["iou"] for i in (0, 1)]
    shared_b = [rb["pixel"]["per_class"][i]["iou"] for i in (0, 2)]
    assert deltas["summary"]["mIoU_shared"]["a"] == pytest.approx(np.mean(shared_a))
    assert deltas["summary"]["mIoU_shared"]["delta"] == pytest.approx(
        np.mean(shared_b) - np.mean(shared_a)
    )
    # No class in common: refused with one line, nothing written.
    none = _other_dataset(tmp_path, ["sky", "sea", "tree"], "none")
    done = run("report", "--pred", pred, "--gt", none, "--split", "test", "-o", c, "--worst", "0")
    assert done.exit_code == 0, done.output
    result = _cli("report", "--compare", a, c, "-o", tmp_path / "cmp2")
    assert result.returncode == 1 and "shares no class" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "cmp2").exists()
    # The same dataset and split: no note.
    result = _cli("report", "--compare", a, a, "-o", tmp_path / "cmp3")
    assert result.returncode == 0 and "note:" not in result.stderr
    assert (
        "mIoU_shared" not in json.loads((tmp_path / "cmp3" / "compare.json").read_text())["summary"]
    )


def test_an_unknown_split_names_the_splits_that_exist(tmp_path, dataset):
    pred, _ = _predictions(tmp_path)
    result = run("report", "--pred", pred, "--gt", dataset, "--split", "nosuch")
    assert result.exit_code == 2, result.output
    flat = " ".join(result.stderr.split())
    assert "no split 'nosuch'" in flat and "splits: train, val, or 'all'" in flat
    assert "run `segkit split` first" not in flat
    # Without any split file the old advice stands (a data problem).
    shutil.rmtree(dataset / "ImageSets")
    result = run("report", "--pred", pred, "--gt", dataset, "--split", "val")
    assert result.exit_code == 1 and "segkit split" in result.output


def test_a_dataset_given_as_run_is_a_usage_error(tmp_path, dataset):
    result = run("report", dataset, "--device", "cpu")
    assert result.exit_code == 2, result.output
    flat = " ".join(result.stderr.split())
    assert "not a segkit run folder (no config.json)" in flat and "--pred DIR --gt" in flat
    assert not (dataset / "report").exists()


def test_a_relative_dataset_path_of_a_run_is_found_from_elsewhere(tmp_path, dataset, monkeypatch):
    # Training ran in tmp_path/work and recorded "../dataset"; the run is work/runs/r.
    work = tmp_path / "work"
    run_dir = _make_run(work / "runs", dataset, 0, "r")
    (run_dir / "config.json").write_text(json.dumps({"dataset": {"root": "../dataset"}}))
    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    result = run("report", run_dir, "--device", "cpu", "--worst", "0")
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert Path(report["provenance"]["dataset"]).resolve() == dataset.resolve()
    # Nowhere to be found: say where the path came from and how to override it.
    (run_dir / "config.json").write_text(json.dumps({"dataset": "gone/ds"}))
    result = run("report", run_dir, "--device", "cpu")
    assert result.exit_code == 1
    flat = " ".join(result.stderr.split())
    assert "gone/ds: dataset folder not found" in flat
    assert f"{run_dir / 'config.json'}" in flat and "--gt DATASET overrides it" in flat
