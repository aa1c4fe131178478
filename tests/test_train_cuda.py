"""GPU paths: tests marked ``cuda`` run on a CUDA machine (benchmarks/gpu_check.sh); the
out-of-memory fallback is exercised on the CPU with a simulated error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers_train import make_voc

import segkit
from segkit.train import stage

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
TINY = {"model": "unet-tiny", "epochs": 1, "workers": 0}


def test_out_of_memory_in_the_first_steps_halves_the_batch(tmp_path: Path, monkeypatch):
    dataset = make_voc(tmp_path / "voc", n_train=8, n_val=2, size=24)
    real = stage.train_one_epoch
    seen = []

    def tight_memory(model, batches, **kwargs):
        size = batches.batch_sampler.batch_size
        seen.append(size)
        if size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, batches, **kwargs)

    monkeypatch.setattr(stage, "train_one_epoch", tight_memory)
    events = []
    summary = segkit.train(dataset, tmp_path / "run", batch_size=8, on_event=events.append, **TINY)
    assert seen == [8, 4, 2] and summary.epochs == 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["batch_size"] == 2 and config["options"]["batch_size"] == 8
    warnings = [e.message for e in events if e.kind == "warning"]
    assert any("--batch-size 4" in w for w in warnings) and any(
        "--batch-size 2" in w for w in warnings
    )


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda(tmp_path: Path, precision: str):
    dataset = make_voc(tmp_path / "voc", n_train=8, n_val=2, size=32)
    summary = segkit.train(
        dataset, tmp_path / "run", precision=precision, device="cuda", batch_size=4,
        channels_last="on", **TINY,
    )  # fmt: skip
    assert summary.precision == precision and summary.device.startswith("cuda")
    assert summary.final["mIoU"] is not None


@pytest.mark.cuda
@cuda
def test_batch_size_auto_on_cuda(tmp_path: Path):
    dataset = make_voc(tmp_path / "voc", n_train=16, n_val=2, size=32)
    segkit.train(dataset, tmp_path / "run", batch_size=0, device="cuda", **TINY)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["batch_size"] == 16  # the probe stops at the split size
