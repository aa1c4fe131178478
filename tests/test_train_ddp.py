"""DDP: torchrun with 2 gloo processes on the CPU trains, all-reduces the confusion matrix,
and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_train import make_voc

from segkit.checkpoint import load_checkpoint
from segkit.dataset import open_dataset
from segkit.devices import resolve_runtime
from segkit.train.data import EvalSet, scan_samples, split_files
from segkit.train.loop import evaluate

pytest.importorskip("torch.distributed.run")


def test_torchrun_two_processes_match_one_process_evaluation(tmp_path: Path):
    dataset = make_voc(tmp_path / "voc", n_train=8, n_val=5, size=24)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "segkit", "train", str(dataset), "-o", str(run), "--model", "unet-tiny",
        "--epochs", "2", "--batch-size", "2", "--workers", "0", "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    # Only rank 0 reports (and writes): one summary table, one line per epoch.
    assert done.stdout.count("segkit train →") == 1
    assert done.stderr.count("epoch 2: train loss") == 1
    assert not list(run.rglob("*.tmp"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]

    # The all-reduced matrix of the 2-process run equals one process evaluating every image.
    saved = json.loads((run / "confusion.json").read_text())["confusion"]["matrix"]
    model = load_checkpoint(run / "checkpoints" / "last").model
    data = open_dataset(dataset)
    val = split_files(data, "val")
    scan = scan_samples(split_files(data, "train"), val, 3)
    batches = ((image[None], mask[None]) for image, mask in EvalSet(val, scan))
    matrix, _, images = evaluate(
        model, batches, num_classes=3, runtime=resolve_runtime("cpu", "fp32")
    )
    assert images == 5
    assert np.array_equal(np.asarray(matrix.matrix), np.asarray(saved))
