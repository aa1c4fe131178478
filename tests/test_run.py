"""`segkit run`: the whole chain end to end, reruns that redo nothing, resume, the config."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from helpers_convert import add_sample, shape
from helpers_convert import run as in_process
from hypothesis import given
from hypothesis import strategies as st

import segkit
from segkit.errors import OptionError
from segkit.pipeline import toml
from segkit.pipeline.config import read_config, resolve
from segkit.pipeline.plan import STATE_NAME

CLI = [sys.executable, "-m", "segkit"]
#: Small and quick: one data worker, no DataLoader processes, a tiny model.
CONFIG = """
[convert]
workers = 1
[validate]
workers = 1
[split]
workers = 1
[weights]
workers = 1
[train]
model = "unet-tiny"
workers = 0
device = "cpu"
[report]
device = "cpu"
worst = 1
[predict]
device = "cpu"
"""


def cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def picture(rng: np.random.Generator, size: int) -> tuple[PIL.Image.Image, list[dict]]:
    """Noise with a bright square and a dark disc, and their labelme shapes."""
    image = rng.normal(120, 10, (size, size, 3))
    x, y = (int(v) for v in rng.integers(2, size - 16, 2))
    cx, cy = (int(v) for v in rng.integers(8, size - 8, 2))
    image[y : y + 12, x : x + 12] += 80
    yy, xx = np.mgrid[:size, :size]
    image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] -= 80
    shapes = [
        shape("square", "rectangle", [[x, y], [x + 11, y + 11]]),
        shape("disc", "circle", [[cx, cy], [cx + 5, cy]]),
    ]
    return PIL.Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), shapes


def labelme_folder(folder: Path, count: int = 8, size: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for index in range(count):
        image, shapes = picture(rng, size)
        add_sample(folder, f"img{index:02d}", shapes, image=image, fmt="PNG", suffix=".png")
    return folder


def mtimes(root: Path) -> dict[str, int]:
    """Every output file's modification time (segkit's lock and claims left out)."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".segkit")
    }


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run of the real command on 8 generated labelme files, with --predict."""
    base = tmp_path_factory.mktemp("run")
    annotations = labelme_folder(base / "annotations")
    unlabeled = base / "unlabeled"
    rng = np.random.default_rng(7)
    unlabeled.mkdir()
    for index in range(2):
        picture(rng, 40)[0].save(unlabeled / f"new{index}.png")
    (base / "small.toml").write_text(CONFIG)
    out = base / "work"
    args = [annotations, "-o", out, "--config", base / "small.toml", "--epochs", "1"]
    started = time.perf_counter()
    done = cli("run", *args, "--predict", unlabeled, "--seed", "3", "--json")
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    return {
        "base": base,
        "out": out,
        "annotations": annotations,
        "unlabeled": unlabeled,
        "summary": json.loads(done.stdout),
        "stderr": done.stderr,
        "seconds": seconds,
    }


def test_run_writes_every_stage_and_summarises(chain: dict) -> None:
    out, summary = chain["out"], chain["summary"]
    assert list(summary["ran"]) == [
        "convert", "validate", "split", "weights", "train", "report", "predict"
    ]  # fmt: skip
    assert summary["skipped"] == []
    dataset = out / "dataset"
    assert summary["images"] == 8
    assert summary["classes"] == ["_background_", "disc", "square"]
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        assert len(list((dataset / folder).iterdir())) == 8, folder
    lists = dataset / "ImageSets" / "Segmentation"
    ids = {name: (lists / f"{name}.txt").read_text().split() for name in ("train", "val", "test")}
    assert sorted(i for split in ids.values() for i in split) == [f"img{i:02d}" for i in range(8)]
    assert json.loads((dataset / "weights.json").read_text())["split"] == "train"
    run = out / "runs" / "train"
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["seed"] == 3 and config["options"]["epochs"] == 1
    for split in ("val", "test"):
        report = json.loads((out / "report" / split / "report.json").read_text())
        assert report["split"] == split and report["images"] == len(ids[split])
        assert (out / "report" / split / "report.html").is_file()
        assert summary["stages"]["report"][split]["mIoU"] == report["pixel"]["mIoU"]
    val = json.loads((out / "report" / "val" / "report.json").read_text())
    assert summary["mIoU"] == val["pixel"]["mIoU"]
    assert summary["object_f1"] == val["objects"]["scores"]["pooled"]["f1"]
    assert summary["test_mIoU"] == report["pixel"]["mIoU"]  # the test split's, last above
    predictions = out / "predictions"
    names = sorted(p.stem for p in (predictions / "masks").glob("*.png"))
    assert names == ["new0", "new1"]
    assert sorted(p.stem for p in (predictions / "labelme").glob("*.json")) == names
    assert (predictions / "ranking.csv").is_file()
    assert (
        "labelme" in summary["next_command"] and str(chain["unlabeled"]) in summary["next_command"]
    )
    assert summary["paths"]["run"] == str(run)


def test_config_is_written_and_round_trips(chain: dict) -> None:
    out = chain["out"]
    written = out / "segkit-run.toml"
    tables = read_config(written)
    assert tables["run"]["predict"] == str(chain["unlabeled"])
    assert (tables["train"]["epochs"], tables["train"]["seed"], tables["split"]["seed"]) == (
        1,
        3,
        3,
    )
    assert tables["predict"]["labelme"] is True and tables["predict"]["rank"] == "uncertainty"
    # The file resolves to what the command line resolved to.
    direct = resolve(
        chain["annotations"],
        out,
        config=chain["base"] / "small.toml",
        overrides={
            "run": {"predict": str(chain["unlabeled"])},
            "train": {"epochs": 1, "seed": 3},
            "split": {"seed": 3},
        },
    )
    assert resolve(config=written) == direct
    assert resolve(config=written).to_toml() == written.read_text()


def test_rerun_redoes_nothing_and_is_fast(chain: dict) -> None:
    out = chain["out"]
    before = mtimes(out)
    started = time.perf_counter()
    summary = segkit.run(config=out / "segkit-run.toml")
    seconds = time.perf_counter() - started
    assert summary.ran == {}
    assert summary.skipped == [
        "convert", "validate", "split", "weights", "train", "report", "predict"
    ]  # fmt: skip
    assert mtimes(out) == before
    assert summary.miou == chain["summary"]["mIoU"]  # the summary comes from the record
    assert seconds < 0.2 * chain["seconds"], (seconds, chain["seconds"])


def test_a_changed_option_reruns_exactly_the_stages_it_affects(chain: dict) -> None:
    out = chain["out"]
    before = mtimes(out)
    summary = segkit.run(config=out / "segkit-run.toml", predict={"min_area": 3})
    assert summary.ran == {"predict": ["options changed: min_area 0 → 3"]}
    after = mtimes(out)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed and all(name.startswith(("predictions/", "segkit-run.toml")) for name in changed)
    assert read_config(out / "segkit-run.toml")["predict"]["min_area"] == 3
    # A labelme file added and one removed: convert reruns; the dataset then differs, so
    # every stage after it (validate's findings about the now stale split files are the
    # split stage's to fix, not a stop).
    add_sample(chain["annotations"], "img99", [shape("disc", "circle", [[20, 20], [25, 20]])],
               size=(40, 40), fmt="PNG", suffix=".png")  # fmt: skip
    for path in chain["annotations"].glob("img07.*"):
        path.unlink()
    summary = segkit.run(config=out / "segkit-run.toml")
    assert summary.ran["convert"] == ["the labelme folder changed"]
    assert summary.ran["split"] == ["the dataset changed (convert)"]
    assert summary.ran["predict"] == ["the model changed (train)"]
    assert len(summary.ran) == 7 and summary.skipped == []
    lists = out / "dataset" / "ImageSets" / "Segmentation"
    names = ("train", "val", "test")
    placed = sorted(i for n in names for i in (lists / f"{n}.txt").read_text().split())
    assert "img99" in placed and "img07" not in placed and len(placed) == 8


def test_interrupted_training_resumes(tmp_path: Path) -> None:
    annotations = labelme_folder(tmp_path / "annotations", count=6, seed=1)
    (tmp_path / "small.toml").write_text(CONFIG.replace("[train]\n", "[train]\nsave_every = 1\n"))
    out = tmp_path / "work"
    args = [annotations, "-o", out, "--config", tmp_path / "small.toml", "--epochs", "3"]
    args += ["--test", "0"]  # one report is enough here
    process = subprocess.Popen(
        [*CLI, "run", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    state = out / "runs" / "train" / "state" / "resume.json"
    deadline = time.monotonic() + 120
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted during training" in stderr and "segkit run --config" in stderr
    # One progress view: stage k of n, then the stage's own (train's epoch lines).
    lines = stderr.splitlines()
    assert [line[:5] for line in lines if " done in " in line] == [
        "[1/6]",
        "[2/6]",
        "[3/6]",
        "[4/6]",
    ]
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1:"))
    assert lines.index("[5/6] train … (not run before)") < first_epoch
    recorded = json.loads((out / STATE_NAME).read_text())["stages"]
    assert recorded["train"]["done"] is False and recorded["weights"]["done"] is True
    trained = len((out / "runs" / "train" / "metrics.jsonl").read_text().splitlines())
    assert 1 <= trained < 3

    events = []
    summary = segkit.run(config=out / "segkit-run.toml", on_event=events.append)
    assert summary.ran["train"] == ["interrupted"]
    assert set(summary.skipped) == {"convert", "validate", "split", "weights"}
    messages = [e.train_event.message for e in events if e.kind == "train"]
    assert any(m.startswith(f"resumed at epoch {trained + 1}") for m in messages), messages
    rows = (out / "runs" / "train" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in rows] == [1, 2, 3]


def test_unknown_tables_and_keys_are_one_clear_error(tmp_path: Path) -> None:
    annotations = labelme_folder(tmp_path / "annotations", count=1)
    config = tmp_path / "bad.toml"
    config.write_text("[train]\nlrr = 0.1\nepochs = 2\n[trian]\nlr = 1\n")
    done = in_process("run", annotations, "-o", tmp_path / "out", "--config", config)
    assert done.exit_code == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {config}: ") and "[trian]" in line
    assert "unknown key(s) in [train]: lrr" in line
    assert not (tmp_path / "out").exists()
    config.write_text('[train]\nlr = "fast"\n')
    with pytest.raises(OptionError, match=r"\[train\] --lr must be a positive number"):
        resolve(annotations, tmp_path / "out", config=config)
    config.write_text("[train\n")
    with pytest.raises(OptionError, match="not valid TOML"):
        resolve(annotations, tmp_path / "out", config=config)
    with pytest.raises(OptionError, match="no labelme folder given"):
        resolve(output=tmp_path / "out")


def test_output_folder_rules(tmp_path: Path) -> None:
    annotations = labelme_folder(tmp_path / "annotations", count=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OptionError, match="not empty and holds no segkit run"):
        segkit.run(annotations, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(OptionError, match="inside the labelme folder"):
        segkit.run(annotations, annotations / "work")
    with pytest.raises(OptionError, match="labelme folder not found"):
        segkit.run(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_values_survive_toml(tmp_path: Path) -> None:
    """Odd strings, lists, maps and paths come back as the options they were."""
    annotations = labelme_folder(tmp_path / "annotations", count=1)
    cfg = resolve(
        annotations,
        tmp_path / "out",
        overrides={
            "convert": {
                "labels": ["_background_", "disc", 'squ"are'],
                "label_map": {"a b": "dïsc", "x=y": 'squ"are'},
            },
            "split": {"group_by": r"^(p\d+)_", "val": 0.3},
            "report": {"classes": ["disc"], "inference": {"tile": 32}},
            "train": {"time_minutes": 1.5, "crop": 32, "border_weights": True},
        },
    )
    assert cfg.options("weights").border is True  # the loss uses border maps
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert resolve(config=path) == cfg
    # --epochs on top of a file with a time budget trains for epochs
    epochs = resolve(config=path, overrides={"train": {"epochs": 4}}).options("train")
    assert (epochs.epochs, epochs.time_minutes) == (4, None)


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_toml_strings_round_trip(text: str) -> None:
    tables = {"t": {"key": text, "list": [text, 1, 2.5, True], "map": {text or "k": text}}}
    assert toml.loads(toml.dumps(tables)) == tables


def test_labels_txt_beside_the_annotations_is_used(tmp_path: Path) -> None:
    annotations = labelme_folder(tmp_path / "annotations", count=1)
    assert resolve(annotations, tmp_path / "out").options("convert").labels is None
    (annotations / "labels.txt").write_text("__ignore__\n_background_\nsquare\ndisc\n")
    cfg = resolve(annotations, tmp_path / "out")
    assert cfg.options("convert").labels == str(annotations.resolve() / "labels.txt")
    given = resolve(annotations, tmp_path / "out", overrides={"convert": {"labels": "a,b"}})
    assert given.options("convert").labels == "a,b"
