"""Faults: SIGKILL mid-epoch then --resume equals an uninterrupted run; Ctrl-C saves and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import safetensors.torch
import torch
from helpers_train import make_voc

ENTRY = "from segkit.cli import entry_point; entry_point()"
ARGS = ("--model", "unet-tiny", "--epochs", "3", "--batch-size", "2", "--crop", "24",
        "--lr", "0.005", "--seed", "7", "--quiet")  # fmt: skip


def command(dataset: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", ENTRY, "train", str(dataset), "-o", str(run), *ARGS, *extra]


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, check=False, env=env)


def wait_for_state(run: Path, process: subprocess.Popen, min_step: int) -> dict:
    """Poll the resume state until it is mid-epoch at or past ``min_step``."""
    path = run / "state" / "resume.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            progress = json.loads(path.read_text())["progress"]
        except (OSError, ValueError):
            progress = None
        if progress and progress["global_step"] >= min_step and progress["batch"] > 0:
            return progress
        time.sleep(0.02)
    raise AssertionError("the run never saved a mid-epoch state")


def metric_rows(run: Path) -> list[dict]:
    keep = ("epoch", "train_loss", "val_loss", "mIoU", "aAcc", "lr")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in keep} for line in lines]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path: Path):
    dataset = make_voc(tmp_path / "voc", n_train=8, n_val=2, size=24)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = finish(command(dataset, straight, "--workers", "0"))
    assert done.returncode == 0, done.stderr

    process = start(command(dataset, killed, "--workers", "1", "--save-every", "1"))
    progress = wait_for_state(killed, process, min_step=5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.jsonl").is_file() or len(metric_rows(killed)) < 3
    # Resuming takes the options from the run folder; workers may differ (seeds do not
    # depend on them).
    resumed = finish(
        [sys.executable, "-c", ENTRY, "train", str(dataset), "-o", str(killed), "--resume",
         "--workers", "0", "--quiet"]
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert progress["global_step"] >= 5

    assert metric_rows(killed) == metric_rows(straight)
    for name in ("last", "best"):
        a = safetensors.torch.load_file(straight / "checkpoints" / f"{name}.safetensors")
        b = safetensors.torch.load_file(killed / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_ctrl_c_saves_and_resume_extends_the_schedule(tmp_path: Path):
    dataset = make_voc(tmp_path / "voc", n_train=8, n_val=2, size=24)
    run = tmp_path / "run"
    process = start(command(dataset, run, "--workers", "0", "--save-every", "1", "--epochs", "40"))
    wait_for_state(run, process, min_step=2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "state saved" in stderr
    saved = json.loads((run / "state" / "resume.json").read_text())["progress"]

    # --resume with a larger --epochs extends the run; other options are refused.
    refused = finish(command(dataset, run, "--resume", "--model", "unet-small"))
    assert refused.returncode == 2 and "cannot change model" in refused.stderr
    done = finish(
        [sys.executable, "-c", ENTRY, "train", str(dataset), "-o", str(run), "--resume",
         "--epochs", "2", "--json"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["epochs"] == 2 and saved["epoch"] < 2
    extended = finish(
        [sys.executable, "-c", ENTRY, "train", str(dataset), "-o", str(run), "--resume",
         "--epochs", "3"]
    )  # fmt: skip
    assert extended.returncode == 0, extended.stderr
    assert "schedule rebuilt for 3 epochs" in extended.stderr
    assert len(metric_rows(run)) == 3
