"""`segkit predict` end to end: real images, a real checkpoint, the real CLI, and the
labelme round trip back through `segkit convert`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from segkit.checkpoint import save_checkpoint
from segkit.models.registry import build_model
from segkit.predict.stage import labelme_document
from tests.helpers_convert import convert_args, encode, exif_bytes, read_array, run

CLASSES = ["_background_", "cell", "nucleus", "fibre"]


def iou_per_class(truth: np.ndarray, got: np.ndarray) -> dict[int, float]:
    result = {}
    for c in np.unique(truth).tolist():
        a, b = truth == c, got == c
        result[c] = float((a & b).sum() / (a | b).sum())
    return result


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a random-initialised small U-Net checkpoint."""
    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = build_model("unet", 3, 4, base_channels=4, depth=2)
    save_checkpoint(
        root / "checkpoints" / "best",
        model,
        classes=CLASSES,
        normalization={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    )
    (root / "config.json").write_text("{}")
    return root


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """An EXIF-rotated JPEG, a grayscale PNG in a sub-folder and a 16-bit TIFF."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    stored = PIL.Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
    (folder / "turned.jpg").write_bytes(encode(stored, "JPEG", exif=exif_bytes(6)))
    PIL.Image.fromarray(rng.integers(0, 255, (30, 20), dtype=np.uint8)).save(
        folder / "sub" / "gray.png"
    )
    PIL.Image.fromarray(rng.integers(0, 65535, (18, 26), dtype=np.uint16)).save(folder / "deep.tif")
    return folder


def predict(*args: str | Path) -> object:
    return run("predict", *args)


def designed_mask() -> np.ndarray:
    """Touching regions, thin parts, a hole, an island in the hole, a border region."""
    yy, xx = np.mgrid[:120, :160]
    mask = np.zeros((120, 160), np.uint8)
    mask[((xx - 50) ** 2 + (yy - 60) ** 2) < 40**2] = 1  # a cell ...
    mask[((xx - 50) ** 2 + (yy - 60) ** 2) < 15**2] = 0  # ... with a hole ...
    mask[((xx - 50) ** 2 + (yy - 60) ** 2) < 6**2] = 2  # ... holding a nucleus
    mask[((xx - 110) ** 2 + (yy - 50) ** 2) < 22**2] = 2  # touching the cell
    mask[100:103, 20:150] = 3  # a thin fibre across both
    mask[10:12, 90:160] = 3  # a thinner one to the border
    mask[0:30, 0:25] = 1  # a border region
    return mask


def test_labelme_round_trip_through_convert(tmp_path: Path) -> None:
    """Masks → predict's polygon export → `segkit convert` → IoU ≥ 0.98 per class."""
    mask = designed_mask()
    source = tmp_path / "labelme"
    source.mkdir()
    PIL.Image.fromarray(np.full((*mask.shape, 3), 128, np.uint8)).save(source / "a.png")
    document = labelme_document(
        mask,
        CLASSES,
        image_path="a.png",
        image_data=None,
        simplify=0.5,  # the CLI default
        min_area=0,
        flags={"segkit_prediction": True},
        provenance={},
    )
    (source / "a.json").write_text(json.dumps(document))
    labels = ",".join(CLASSES[1:])
    result = run(*convert_args(source, tmp_path / "voc", "--labels", labels))
    assert result.exit_code == 0, result.output
    back = read_array(tmp_path / "voc" / "SegmentationClass" / "a.png")
    ious = iou_per_class(mask, back)
    assert set(ious) == {0, 1, 2, 3}
    assert min(ious.values()) >= 0.98, ious
    labelme = pytest.importorskip("labelme._label_file")
    loaded = labelme.LabelFile(str(source / "a.json"))
    assert [s["label"] for s in loaded.shapes] == [s["label"] for s in document["shapes"]]
    assert loaded.flags == {"segkit_prediction": True}


def test_predict_writes_every_output_in_the_display_frame(
    run_dir: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = predict(run_dir, images, "-o", out, "--labelme", "--save-probs", "--simplify", "0")
    assert result.exit_code == 0, result.output
    ids = ["deep", "sub/gray", "turned"]
    for id_ in ids:
        with PIL.Image.open(out / "masks" / f"{id_}.png") as mask:
            assert mask.mode == "P"
        with PIL.Image.open(out / "overlays" / f"{id_}.jpg") as overlay:
            assert overlay.format == "JPEG"
    # EXIF orientation 6 turns the stored 40×24 picture into 24 wide × 40 high.
    mask = read_array(out / "masks" / "turned.png")
    assert mask.shape == (40, 24)
    probs = np.load(out / "probs" / "turned.npy")
    assert probs.dtype == np.float16 and probs.shape == (4, 40, 24)
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1, atol=5e-3)
    assert (probs.argmax(0) == mask).mean() > 0.99  # float16 may flip near-ties
    doc = json.loads((out / "labelme" / "sub" / "gray.json").read_text())
    assert doc["imageData"] is None and doc["version"] == "6.3.1"
    assert (doc["imageHeight"], doc["imageWidth"]) == (30, 20)
    assert (out / "labelme" / "sub" / doc["imagePath"]).resolve() == (
        images / "sub" / "gray.png"
    ).resolve()
    assert {s["description"] for s in doc["shapes"]} == {"segkit prediction"}
    # The whole way back: predicted JSON → convert → the very masks predict wrote.
    labels = ",".join(CLASSES[1:])
    result = run(*convert_args(out / "labelme", tmp_path / "voc", "--labels", labels))
    assert result.exit_code == 0, result.output
    for id_ in ids:
        converted = read_array(
            tmp_path / "voc" / "SegmentationClass" / f"{id_.replace('/', '__')}.png"
        )
        assert np.array_equal(converted, read_array(out / "masks" / f"{id_}.png")), id_
    record = json.loads((out / "predictions.json").read_text())
    assert [row["id"] for row in record["images"]] == ids


def test_rerun_skips_force_redoes_and_person_made_json_is_kept(
    run_dir: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert predict(run_dir, images, "-o", out, "--labelme").exit_code == 0
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = predict(run_dir, images, "-o", out, "--labelme", "--json")
    assert json.loads(again.stdout)["skipped_up_to_date"] == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes
    # A person corrects one pre-annotation in labelme; another JSON was never segkit's.
    edited = out / "labelme" / "turned.json"
    edited.write_text(edited.read_text().replace('"segkit_prediction": true', '"ok": true'))
    foreign = out / "labelme" / "deep.json"
    foreign.unlink()
    foreign.write_text('{"shapes": []}')
    forced = predict(run_dir, images, "-o", out, "--labelme", "--force", "--json")
    assert forced.exit_code == 0
    summary = json.loads(forced.stdout)
    assert summary["predicted"] == 3
    assert sorted(summary["kept_annotations"]) == sorted([str(foreign), str(edited)])
    assert '"ok": true' in edited.read_text()
    assert foreign.read_text() == '{"shapes": []}'
    replaced = predict(
        run_dir, images, "-o", out, "--labelme", "--force", "--overwrite-annotations"
    )
    assert replaced.exit_code == 0
    assert "segkit_prediction" in edited.read_text() and "segkit" in foreign.read_text()


def test_foreign_mask_in_the_way_stops_before_writing(
    run_dir: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "deep.png").write_bytes(b"mine")
    result = predict(run_dir, images, "-o", out)
    assert result.exit_code == 1
    assert "masks/deep.png" in result.stderr and "not written by segkit" in result.stderr
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["deep.png"]
    for name in ("ranking.csv", "predictions.json"):  # also the stage's own file names
        other = tmp_path / name
        other.mkdir()
        (other / name).write_text("mine")
        result = predict(run_dir, images, "-o", other, "--rank", "uncertainty")
        assert result.exit_code == 1 and f"{name} not written by segkit" in result.stderr
        assert (other / name).read_text() == "mine"


def test_a_person_made_json_is_never_claimed(
    run_dir: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed mid-run, the claim must not list a person's file as segkit's."""
    from segkit.predict import stage

    out = tmp_path / "out"
    (out / "labelme").mkdir(parents=True)
    (out / "labelme" / "deep.json").write_text('{"shapes": []}')

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "_predict_one", killed)
    with pytest.raises(KeyboardInterrupt):
        stage.predict(images, out, stage.PredictOptions(run=run_dir, labelme=True))
    claim = json.loads((out / ".segkit-predict-claim.json").read_text())
    assert "labelme/turned.json" in claim["pending"]
    assert "labelme/deep.json" not in claim["pending"]
    monkeypatch.undo()
    assert predict(run_dir, images, "-o", out, "--labelme").exit_code == 0
    assert (out / "labelme" / "deep.json").read_text() == '{"shapes": []}'


def test_unreadable_image_is_one_line_and_the_rest_is_written(
    run_dir: Path, images: Path, tmp_path: Path
) -> None:
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    result = predict(run_dir, images, "-o", out)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(images / "broken.png") in lines[0]
    assert len(list((out / "masks").rglob("*.png"))) == 3


def test_checkpoint_problems_are_one_clear_line(
    run_dir: Path, images: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    (bad / "checkpoints").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        data = (run_dir / "checkpoints" / f"best{suffix}").read_bytes()
        (bad / "checkpoints" / f"best{suffix}").write_bytes(data)
    tensors = bad / "checkpoints" / "best.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:200])  # truncated
    result = predict(bad, images, "-o", tmp_path / "o1")
    assert result.exit_code == 1 and "does not match its sidecar" in result.stderr
    # A pickle is never opened: a file without segkit's sidecar is refused as such.
    pickle = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, pickle)
    result = predict(pickle, images, "-o", tmp_path / "o2")
    assert result.exit_code == 1 and "not a segkit checkpoint" in result.stderr
    result = predict(tmp_path / "nowhere", images, "-o", tmp_path / "o3")
    assert result.exit_code == 2 and "not found" in result.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_model_channel_mismatch_is_explained(images: Path, tmp_path: Path) -> None:
    model = build_model("unet", 4, 2, base_channels=4, depth=2)
    save_checkpoint(tmp_path / "four" / "best", model, classes=["_background_", "x"])
    result = predict(tmp_path / "four" / "best.safetensors", images, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "4 input channels" in result.stderr


def test_tiled_prediction_equals_whole_image_on_a_same_padding_unet(
    run_dir: Path, tmp_path: Path
) -> None:
    yy, xx = np.mgrid[:96, :120]
    picture = np.stack([xx * 2 % 256, yy * 2 % 256, (xx + yy) % 256], -1).astype(np.uint8)
    PIL.Image.fromarray(picture).save(tmp_path / "big.png")
    whole = predict(run_dir, tmp_path / "big.png", "-o", tmp_path / "w", "--save-probs")
    tiled = predict(
        run_dir, tmp_path / "big.png", "-o", tmp_path / "t", "--save-probs",
        "--tile", "48", "--overlap", "24", "--batch-size", "3",
    )  # fmt: skip
    assert whole.exit_code == 0 and tiled.exit_code == 0
    a = np.load(tmp_path / "w" / "probs" / "big.npy").astype(np.float32)
    b = np.load(tmp_path / "t" / "probs" / "big.npy").astype(np.float32)
    record = json.loads((tmp_path / "t" / "predictions.json").read_text())
    assert record["images"][0]["tile"] == 48
    # Same padding sees zeros at a tile's edge, Gaussian blending keeps that small.
    assert np.abs(a - b).mean() < 0.01
    assert (a.argmax(0) == b.argmax(0)).mean() > 0.98


def _train_tiny(tmp_path: Path) -> Path:
    """A small U-Net trained for a few steps: bright squares on dark ground are class 1."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model("unet", 3, 2, base_channels=4, depth=2)
    images, masks = [], []
    for _ in range(8):
        mask = np.zeros((32, 32), np.int64)
        y, x = rng.integers(0, 20, 2)
        mask[y : y + 12, x : x + 12] = 1
        image = np.where(mask[None] == 1, 0.9, 0.1) + rng.normal(0, 0.03, (3, 32, 32))
        images.append(image)
        masks.append(mask)
    x = torch.tensor(np.stack(images), dtype=torch.float32)
    y = torch.tensor(np.stack(masks))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    save_checkpoint(tmp_path / "trained" / "best", model, classes=["_background_", "square"])
    return tmp_path / "trained" / "best.safetensors"


def test_uncertainty_ranking_puts_the_out_of_distribution_image_first(tmp_path: Path) -> None:
    checkpoint = _train_tiny(tmp_path)
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for index in range(3):
        picture = np.full((32, 32), 25, np.uint8)
        y, x = rng.integers(0, 20, 2)
        picture[y : y + 10, x : x + 14] = 230
        PIL.Image.fromarray(np.repeat(picture[:, :, None], 3, 2)).save(folder / f"in{index}.png")
    odd = rng.integers(90, 160, (32, 32, 3), dtype=np.uint8)  # mid-grey noise
    PIL.Image.fromarray(odd).save(folder / "odd.png")
    out = tmp_path / "out"
    result = predict(checkpoint, folder, "-o", out, "--labelme", "--rank", "uncertainty")
    assert result.exit_code == 0, result.output
    lines = (out / "ranking.csv").read_text().splitlines()
    assert lines[0] == "rank,id,image,mean_entropy,low_confidence_share"
    assert lines[1].startswith("1,odd,")
    assert json.loads((out / "labelme" / "odd.json").read_text())["flags"]["segkit_uncertain"]
    assert not json.loads((out / "labelme" / "in0.json").read_text())["flags"]["segkit_uncertain"]


MEMORY_PROBE = """
import sys, numpy as np, torch
from segkit.checkpoint import load_checkpoint
from segkit.inference import InferenceOptions, predict_mask
model = load_checkpoint(sys.argv[1]).model
torch.set_num_threads(1)
pixels = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
options = InferenceOptions(tile=128, overlap=0.125)
predict_mask(model, pixels[:160, :160], options)  # library code and thread pools paged in
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # the peak (VmHWM) starts again from the current resident set
before = status("VmRSS:")
mask = predict_mask(model, pixels, options, normalization={"mean": [0.5], "std": [0.25]})
print((status("VmHWM:") - before) * 1024)
"""


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="resets the peak RSS as Linux does"
)
def test_tiled_peak_memory_is_bounded_by_the_tile(run_dir: Path) -> None:
    """Peak memory growth of a tiled 1500×1500 prediction from decoded uint8 pixels: the
    uint8 mask, a band of tile rows and one batch's activations. The image-sized float32
    buffers of the old path (image, padded copy, canvas, weights: 34 bytes a pixel, 73 MiB
    here) would not fit; benchmarks/predict.py measures the real figures."""
    checkpoint = str(run_dir / "checkpoints" / "best.safetensors")
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, checkpoint],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    grown = int(out.stdout.split()[-1])
    pixels = 1500 * 1500
    assert grown < pixels * 4 + 24 * 2**20, grown / 2**20


def test_image_over_max_pixels_is_one_line_and_pillows_own_limit_does_not_refuse(
    run_dir: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """segkit's --max-pixels guard names the file and is raised by the user; Pillow's
    decompression-bomb limit (here lowered below every image) never refuses."""
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    result = predict(run_dir, images, "-o", tmp_path / "out", "--max-pixels", "600")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    big = images / "turned.jpg"  # 960 pixels; the other two have 600 and 468
    assert len(lines) == 1 and str(big) in lines[0] and "--max-pixels" in lines[0], lines
    assert sorted(p.name for p in (tmp_path / "out" / "masks").rglob("*.png")) == [
        "deep.png",
        "gray.png",
    ]
    assert not (tmp_path / "out" / "masks" / "turned.png").exists()
    result = predict(run_dir, images, "-o", tmp_path / "out", "--max-pixels", "960")
    assert result.exit_code == 0, result.stderr
    assert PIL.Image.MAX_IMAGE_PIXELS == 100  # lifted only while reading
