"""`segkit train` bad input: one line each, exit 2 for usage and 1 for data, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers_train import make_voc
from typer.testing import CliRunner

from segkit.cli import app
from segkit.errors import SegkitNote
from segkit.voc import encode_palette_png

TINY = ("--model", "unet-tiny", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--quiet")


def invoke(*args: str | Path):
    return CliRunner().invoke(app, ["train", *map(str, args)], catch_exceptions=False)


def one_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "voc", n_train=4, n_val=2, size=24)


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--model", "nope"], ["unknown model 'nope'", "unet-tiny"]),
        (["--loss", "ce+wrong"], ["unknown loss 'wrong'"]),
        (["--crop", "64"], ["--crop 64 is larger than the smallest training image (24 px"]),
        (["--batch-size", "5"], ["--batch-size 5 is larger than the training split (4 images)"]),
        (["--batch-size", "many"], ["--batch-size must be a positive integer or auto"]),
        (["--optimizer", "lion"], ["unknown optimizer 'lion'"]),
        (["--epochs", "0"], ["--epochs must be a positive integer"]),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(dataset, tmp_path, options, fragments):
    run = tmp_path / "run"
    one_error(invoke(dataset, "-o", run, *TINY, *options), 2, *fragments)
    assert not run.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(dataset, tmp_path):
    one_error(invoke(dataset, "-o", tmp_path / "run", "--device", "cuda"), 2, "no CUDA GPU")
    one_error(invoke(dataset, "-o", tmp_path / "run", "--batch-size", "auto"), 2, "needs a CUDA")
    assert not (tmp_path / "run").exists()


def test_data_problems_exit_1_naming_the_command_to_run(dataset, tmp_path):
    run = tmp_path / "run"
    one_error(
        invoke(dataset, "-o", run, *TINY, "--class-weights"), 1, "weights.json", "segkit weights"
    )
    one_error(
        invoke(dataset, "-o", run, *TINY, "--border-weights"),
        1,
        "weight map missing",
        "segkit weights --border",
    )
    (dataset / "ImageSets" / "Segmentation" / "val.txt").unlink()
    one_error(invoke(dataset, "-o", run, *TINY), 1, "val.txt", "segkit split")
    assert not run.exists()


def test_bad_mask_values_are_listed_before_training(dataset, tmp_path):
    bad = np.zeros((24, 24), np.uint8)
    bad[3, 3] = 9
    (dataset / "SegmentationClass" / "img001.png").write_bytes(encode_palette_png(bad))
    (dataset / "SegmentationClass" / "img005.png").write_bytes(encode_palette_png(bad + 3))
    run = tmp_path / "run"
    one_error(
        invoke(dataset, "-o", run, *TINY), 1, "img001.png: values [9]", "img005.png: values [3, 12]"
    )
    assert not run.exists()


def test_folder_rules_force_and_resume_checks(dataset, tmp_path):
    run = tmp_path / "run"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    one_error(invoke(dataset, "-o", tmp_path / "other", *TINY), 2, "holds no segkit run")
    one_error(invoke(dataset, "-o", run, "--resume"), 2, "no run to resume")

    first = invoke(dataset, "-o", run, *TINY)
    assert first.exit_code == 0, first.stderr
    one_error(
        invoke(dataset, "-o", run, *TINY), 2, "holds a training run already", "--resume", "--force"
    )

    names = dataset / "class_names.txt"
    names.write_text("_background_\nsquare\ncircle\n")
    one_error(
        invoke(dataset, "-o", run, "--resume"),
        2,
        "not the dataset this run was trained on",
        "circle",
    )
    names.write_text("_background_\nsquare\ndisc\n")

    forced = invoke(dataset, "-o", run, *TINY, "--force", "--seed", "3", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((run / "config.json").read_text())["options"]["seed"] == 3


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(dataset, tmp_path):
    run = tmp_path / "run"
    # A learning rate of 1e4 without clipping blows the weights up within a few steps.
    diverging = invoke(
        dataset, "-o", run, *TINY, "--epochs", "30", "--lr", "1e4", "--clip-grad", "0",
        "--optimizer", "sgd", "--warmup", "0", "--schedule", "constant",
    )  # fmt: skip
    one_error(diverging, 1, "loss is", "at step", "last saved checkpoint is kept")
    step = int(diverging.stderr.split("at step ")[1].split()[0])
    assert step > 2, diverging.stderr  # not the first step: earlier epochs were saved
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["epoch"] == len(rows) >= 1
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["epoch"] == len(rows)


def test_encoder_weights_are_loaded_and_their_hash_recorded(dataset, tmp_path):
    import hashlib

    import safetensors.torch
    from test_encoder_weights import R18, _torchvision_resnet_state

    weights = tmp_path / "resnet18.safetensors"
    safetensors.torch.save_file(_torchvision_resnet_state(R18, 64), str(weights))
    run = tmp_path / "run"
    one_error(
        invoke(dataset, "-o", run, *TINY, "--encoder-weights", weights), 2, "no pretrained encoder"
    )
    assert not run.exists()
    done = invoke(dataset, "-o", run, *TINY, "--model", "unet-r18", "--encoder-weights", weights)
    assert done.exit_code == 0, done.stderr
    record = json.loads((run / "config.json").read_text())["encoder_weights"]
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["loaded"] == 100 and record["missing"] == []  # 102 tensors less fc.*


def test_force_keeps_files_segkit_did_not_write_and_names_them(dataset, tmp_path):
    run = tmp_path / "run"
    assert invoke(dataset, "-o", run, *TINY).exit_code == 0
    (run / "report").mkdir()
    (run / "checkpoints" / "mymodel.pt").write_text("mine")
    (run / "state" / "keep.txt").write_text("mine")
    old_state = sorted((run / "state").glob("resume-*.safetensors"))
    with pytest.warns(SegkitNote) as caught:
        forced = invoke(dataset, "-o", run, *TINY, "--force", "--seed", "5")
    assert forced.exit_code == 0, forced.stderr
    assert (run / "checkpoints" / "mymodel.pt").read_text() == "mine"
    assert (run / "state" / "keep.txt").read_text() == "mine"
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert sorted((run / "state").glob("resume-*.safetensors")) == old_state  # same step
    notes = [str(w.message) for w in caught if w.category is SegkitNote]
    assert len(notes) == 2, notes
    assert "checkpoints/mymodel.pt" in notes[0] and "state/keep.txt" in notes[0]
    assert "segkit report" in notes[1] and "report" in notes[1]
    assert json.loads((run / "config.json").read_text())["options"]["seed"] == 5


def test_force_refuses_a_same_named_file_of_the_user(dataset, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "config.json").write_text('{"my": 1}')
    (project / "metrics.csv").write_text("notes")
    one_error(
        invoke(dataset, "-o", project, *TINY, "--force"), 2, "config.json", "metrics.csv",
        "not written by a segkit run",
    )  # fmt: skip
    assert (project / "config.json").read_text() == '{"my": 1}'
    assert sorted(p.name for p in project.iterdir()) == ["config.json", "metrics.csv"]
    (project / "config.json").unlink()
    (project / "metrics.csv").rename(project / "notes.csv")
    with pytest.warns(SegkitNote, match="notes.csv"):
        forced = invoke(dataset, "-o", project, *TINY, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert (project / "notes.csv").read_text() == "notes"


def test_a_bug_in_training_shows_its_traceback_then_one_error_line_and_json(
    dataset, tmp_path, monkeypatch
):
    import segkit.train.stage as stage

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(stage, "train_one_epoch", broken)
    result = invoke(dataset, "-o", tmp_path / "run", *TINY, "--json")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr  # for the bug report
    assert 'raise RuntimeError("boom' in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: internal error: RuntimeError: boom"]
    assert json.loads(result.stdout) == {
        "ok": False, "exit_code": 1, "errors": ["internal error: RuntimeError: boom"]
    }  # fmt: skip


def test_the_dataset_path_is_recorded_absolute(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(dataset.parent)
    result = invoke(dataset.name, "-o", "run", *TINY)
    assert result.exit_code == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["root"] == str(dataset.resolve())
    config["dataset"]["root"] = dataset.name  # a run recorded before: relative
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    resumed = invoke(dataset.name, "-o", "run", "--resume", "--epochs", "2", "--quiet")
    assert resumed.exit_code == 0, resumed.stderr


def test_class_weights_counted_on_more_than_the_train_split_are_refused(dataset, tmp_path):
    runner = CliRunner()
    counted = runner.invoke(app, ["weights", str(dataset), "--split", "all"])
    assert counted.exit_code == 0, counted.stderr
    run = tmp_path / "run"
    one_error(
        invoke(dataset, "-o", run, *TINY, "--class-weights"),
        1, "weights.json", "every image", "segkit weights",
    )  # fmt: skip
    assert not run.exists()
    recounted = runner.invoke(app, ["weights", str(dataset), "--force"])
    assert recounted.exit_code == 0, recounted.stderr
    assert invoke(dataset, "-o", run, *TINY, "--class-weights").exit_code == 0


def test_class_weights_of_a_train_split_changed_since_are_refused(dataset, tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["weights", str(dataset)]).exit_code == 0
    splits = dataset / "ImageSets" / "Segmentation"
    train = (splits / "train.txt").read_text().split()
    val = (splits / "val.txt").read_text()
    moved = train.pop()  # one training image moves to val after the weights were counted
    (splits / "train.txt").write_text("\n".join(train) + "\n")
    (splits / "val.txt").write_text(val + moved + "\n")
    run = tmp_path / "run"
    one_error(
        invoke(dataset, "-o", run, *TINY, "--class-weights"),
        1, "weights.json", "train split that has changed since", "0 image(s) added, 1 removed",
        "segkit weights",
    )  # fmt: skip
    assert not run.exists()
    assert runner.invoke(app, ["weights", str(dataset)]).exit_code == 0  # no --force needed
    assert invoke(dataset, "-o", run, *TINY, "--class-weights").exit_code == 0


def test_the_default_batch_size_is_clamped_to_a_small_training_split(dataset, tmp_path):
    run = tmp_path / "run"
    tiny = ("--model", "unet-tiny", "--epochs", "1", "--workers", "0", "--quiet")
    result = invoke(dataset, "-o", run, *tiny)
    assert result.exit_code == 0, result.stderr
    assert "--batch-size 4 (the default 8" in result.stderr
    assert json.loads((run / "config.json").read_text())["resolved"]["batch_size"] == 4
    resumed = invoke(dataset, "-o", run, "--resume", "--epochs", "2", "--quiet")
    assert resumed.exit_code == 0, resumed.stderr


def test_mixed_channel_layouts_are_their_own_error_naming_the_files(dataset, tmp_path):
    odd = dataset / "JPEGImages" / "img002.png"
    PIL.Image.fromarray(np.full((24, 24), 4000, np.uint16)).save(odd)
    result = invoke(dataset, "-o", tmp_path / "run", *TINY)
    one_error(result, 1, "img002.png (1 channel(s) of uint16)", "img000.png: 3 channel(s)",
              "one layout", "convert the odd images")  # fmt: skip
    assert "classes are" not in result.stderr


def test_help_and_docs_state_the_same_default_crop():
    from segkit.train.stage import DEFAULT_CPU_CROP, DEFAULT_CROP

    phrase = f"smallest training image side, at most {DEFAULT_CROP} (128 on a CPU)"
    assert DEFAULT_CPU_CROP == 128
    help_text = " ".join(CliRunner().invoke(app, ["train", "--help"]).stdout.split())
    docs = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    assert phrase in help_text and phrase in docs
