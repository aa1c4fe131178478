"""The CLI convention every command keeps (docs/cli.md): exit codes, -h, --json, pipes.

New commands join the matrix by adding their cases to ``CASES``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_convert import add_sample, run, shape

from segkit.checkpoint import save_checkpoint
from segkit.cli import _docs
from segkit.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "sample_data"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A converted dataset and a tiny checkpoint, made once for the whole matrix."""
    base = tmp_path_factory.mktemp("convention")
    dataset = base / "ds"
    done = run("convert", SAMPLE_DATA, "-o", dataset, "--labels", SAMPLE_DATA / "labels.txt")
    assert done.exit_code == 0, done.output
    torch.manual_seed(0)
    model = build_model("unet-tiny", 3, 2, base_channels=4).eval()
    save_checkpoint(base / "best.safetensors", model, classes=["_background_", "x"])
    return {"base": base, "ds": dataset, "ckpt": base / "best.safetensors"}


def _report_run(files: dict[str, Path]) -> Path:
    """A run folder for ``segkit report``: a tiny model of the dataset's classes."""
    folder = files["base"] / "run"
    if not (folder / "config.json").is_file():
        from segkit.dataset import open_dataset

        torch.manual_seed(0)
        classes = list(open_dataset(files["ds"]).classes)
        model = build_model("unet-tiny", 3, len(classes), base_channels=4).eval()
        save_checkpoint(folder / "checkpoints" / "best", model, classes=classes)
        (folder / "config.json").write_text(json.dumps({"dataset": str(files["ds"])}))
    return folder


def args_for(command: str, case: str, files: dict[str, Path], tmp_path: Path) -> list[str]:
    """The command line of ``segkit COMMAND`` for one case of the matrix."""
    nope = str(tmp_path / "nope")
    path = {
        "convert": [str(SAMPLE_DATA), "-o", str(tmp_path / "out"), "--workers", "1"],
        "validate": [str(files["ds"]), "--workers", "1"],
        "split": [str(files["ds"]), "--workers", "1"],
        "weights": [str(files["ds"]), "--workers", "1"],
        "models": ["-m", "unet-tiny", "--size", "32"],
        "export": [str(files["ckpt"]), "--onnx", "--no-check", "--size", "32"],
        "train": [str(files["ds"]), "-o", str(tmp_path / "run"), "--epochs", "1"],
        "run": [str(SAMPLE_DATA), "-o", str(tmp_path / "work"), "--epochs", "1"],
        "predict": [str(files["ckpt"]), str(files["ds"] / "JPEGImages"), "-o", str(tmp_path / "p")],
        "report": [
            *([str(_report_run(files))] if command == "report" else []),
            *["--split", "all", "--worst", "0", "--device", "cpu", "-o", str(tmp_path / "r")],
        ],
    }[command]
    if command == "export":
        path += ["-o", str(tmp_path / "m.onnx")]
    if case == "ok":
        return [command, *path]
    if case == "missing":
        return [command, nope, *path[1:]]
    if case == "empty":
        return [command, "", *path[1:]]
    if case == "workers0":
        return [command, *path[:1], "--workers", "0"]
    if case == "no split":
        # A copy: the matrix's split "ok" case writes split files into the shared dataset.
        bare = tmp_path / "no-split"
        shutil.copytree(files["ds"], bare, ignore=shutil.ignore_patterns("ImageSets"))
        return [command, str(bare), *path[1:]]
    if case == "choice":
        choice = {
            "convert": ["--image-format", "gif"],
            "weights": ["--scheme", "bogus"],
            "models": ["-m", "bogus"],
            "train": ["--optimizer", "bogus"],
            "predict": ["--tta", "bogus"],
            "report": ["--checkpoint", "bogus"],
        }[command]
        return [command, *path, *choice]
    raise AssertionError(case)


WITH_PATH = ("convert", "validate", "split", "weights", "export", "predict", "report")
WITH_WORKERS = ("convert", "validate", "split", "weights")
WITH_CHOICE = ("convert", "weights", "models", "predict", "report")
COMMANDS = (*WITH_PATH, "models")
#: (command, case, exit code); train's "ok" needs split files (tests/test_train_e2e.py),
#: run's is tests/test_run.py
CASES = [
    *[(c, "ok", 0) for c in COMMANDS],
    *[(c, "missing", 2) for c in (*WITH_PATH, "train", "run")],
    *[(c, "empty", 2) for c in (*WITH_PATH, "train", "run")],
    *[(c, "workers0", 2) for c in WITH_WORKERS],
    *[(c, "choice", 2) for c in (*WITH_CHOICE, "train")],
    ("train", "no split", 1),
]


def stderr_lines(result) -> list[str]:
    return result.stderr.splitlines()


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
@pytest.mark.parametrize(("command", "case", "code"), CASES)
def test_exit_codes_errors_and_json(
    files: dict[str, Path], tmp_path: Path, command: str, case: str, code: int, as_json: bool
) -> None:
    args = args_for(command, case, files, tmp_path) + (["--json"] if as_json else [])
    result = run(*args)
    assert result.exit_code == code, (args, result.output)
    lines = stderr_lines(result)
    assert "Traceback" not in result.output and "object at 0x" not in result.output
    if code:
        # One line naming the problem; never a blank line before it.
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        if case == "choice":
            assert "bogus" in lines[0] or "gif" in lines[0]
        if case == "missing":
            assert "nope" in lines[0] and "not found" in lines[0]
    if as_json:
        document = json.loads(result.stdout)  # the whole of stdout is one document
        if code:
            assert document == {"ok": False, "exit_code": code, "errors": [lines[0][7:]]}
        else:
            assert "ok" not in document or document["ok"] is True


@pytest.mark.parametrize("command", (*COMMANDS, "train", "run"))
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(command: str, flag: str) -> None:
    result = run(command, flag)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: segkit {command} ")
    assert "\nExamples:\n" in result.stdout.replace("  Examples:", "Examples:")
    assert "<bool>" not in result.stdout  # flags show as flags
    assert "--json" in result.stdout


def test_help_reads_at_80_columns() -> None:
    for name in (None, *COMMANDS, "run", "demo"):
        text = _docs.command_help(name)
        long = [line for line in text.splitlines() if len(line) > _docs.WIDTH]
        assert long == [], name
        assert "…" not in text  # no option name is cut


def test_choices_are_listed_in_help() -> None:
    assert "error|ignore|background|skip" in _docs.command_help("convert")
    assert "jpg|png" in _docs.command_help("convert")
    assert "effective-number" in _docs.command_help("weights")


def test_docs_cli_md_is_generated_from_the_app() -> None:
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == _docs.render(), (
        "regenerate: python -m segkit.cli._docs > docs/cli.md"
    )
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in _docs.render()


def test_data_failure_with_json_is_one_document(files: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "in"
    add_sample(broken, "good")
    (broken / "bad.json").write_text("{not json", encoding="utf-8")
    result = run("convert", broken, "-o", tmp_path / "out", "--workers", "1", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failures"] and "bad.json" in result.stderr


def test_conflicting_maps_are_a_usage_error(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    args = ["--map", "cell=nucleus", "--map", "cell=debris"]
    result = run("convert", tmp_path / "in", "-o", tmp_path / "out", *args)
    assert result.exit_code == 2 and "conflict" in result.stderr
    assert not (tmp_path / "out").exists()


def test_labels_naming_a_folder_says_so(tmp_path: Path) -> None:
    add_sample(tmp_path / "in", "a")
    result = run("convert", tmp_path / "in", "-o", tmp_path / "out", "--labels", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.stderr


def test_undecodable_image_is_named_without_object_reprs(tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    add_sample(tmp_path / "in", "a")
    assert run("convert", tmp_path / "in", "-o", dataset, "--workers", "1").exit_code == 0
    (dataset / "JPEGImages" / "a.jpg").write_bytes(b"this is not a picture at all")
    result = run("validate", dataset, "--workers", "1", "--json")
    assert result.exit_code == 1
    [finding] = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "unreadable"]
    assert finding["file"] == "JPEGImages/a.jpg"
    assert "object at" not in finding["detail"] and "not an image format" in finding["detail"]


def test_skipped_hidden_files_and_symlinked_folders_are_counted(tmp_path: Path) -> None:
    source = tmp_path / "in"
    add_sample(source, "a")
    add_sample(source / ".cache", "b")
    add_sample(tmp_path / "elsewhere", "c")
    (source / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    result = run("convert", source, "-o", tmp_path / "out", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 1
    assert summary["skipped"] == {"hidden file": 1, "symlinked folder": 1}
    table = run("convert", source, "-o", tmp_path / "out", "--workers", "1").stdout
    assert "1 hidden file, 1 symlinked folder" in table


# -- output through a pipe ----------------------------------------------------------

LONG = "a_rather_long_file_name_that_would_wrap_in_any_table_column_at_eighty"
CLASSES = [f"class_{i:02d}_with_a_long_descriptive_name" for i in range(1, 23)]


def segkit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess, stdout a pipe, the terminal 80 columns wide."""
    env = {**os.environ, "COLUMNS": "80"}
    command = [sys.executable, "-m", "segkit", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def whole_on_a_line(text: str, *names: str) -> list[str]:
    """The names that no single line of ``text`` holds whole."""
    lines = text.splitlines()
    return [name for name in names if not any(name in line for line in lines)]


def test_piped_output_keeps_names_whole(tmp_path: Path) -> None:
    source = tmp_path / "in"
    for index in range(4):
        shapes = [
            shape(name, "rectangle", [[k, k], [k + 3, k + 3]])
            for k, name in enumerate(CLASSES[index::4])
        ]
        add_sample(source, f"{LONG}_{index}", shapes, size=(40, 48))
    dataset = tmp_path / "a_dataset_folder_with_a_long_name_to_make_titles_wide" / "ds"
    labels = ",".join(["_background_", *CLASSES])
    converted = segkit("convert", source, "-o", dataset, "--labels", labels, "--workers", "1")
    assert converted.returncode == 0, converted.stderr
    assert whole_on_a_line(converted.stdout, str(dataset), *CLASSES) == []
    assert converted.stderr == ""  # no progress bar, no blank line

    # The pictures are alike (near-duplicates); a regex keeps each image its own group.
    split = segkit("split", dataset, "--test", "0", "--group-by", r"_(\d)$", "--workers", "1")
    assert split.returncode == 0, split.stderr
    assert whole_on_a_line(split.stdout, str(dataset), *CLASSES) == []
    # 22 class columns do not fit 80 columns: each class is a row of its own.
    rows = [line.strip("│┃ ") for line in split.stdout.splitlines()]
    assert all(any(row.startswith(name) for row in rows) for name in CLASSES)

    (dataset / "SegmentationClass" / f"{LONG}_1.png").unlink()
    validated = segkit("validate", dataset, "--workers", "1")
    assert validated.returncode == 1
    assert whole_on_a_line(validated.stdout, f"JPEGImages/{LONG}_1.jpg") == []
    assert validated.stderr == ""
