"""`segkit models` and `segkit export` end to end through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from segkit.checkpoint import save_checkpoint
from segkit.cli import app
from segkit.models import build_model

UNET_DEFAULT_PARAMS = 31_037_698


def run(*args: object):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def test_models_table_lists_registry_with_params_and_flops() -> None:
    result = run("models")
    assert result.exit_code == 0, result.output
    for name in ("unet", "unet-small", "unet-tiny", "unet-valid", "unetpp", "unetpp-small"):
        assert f" {name} " in result.output
    for name in ("unet3p", "unet3p-small", "unet-r18", "unet-r34"):
        assert f" {name} " in result.output
    assert "27.00M" in result.output  # UNet 3+
    assert "31.04M" in result.output  # the default U-Net
    assert "268→84" in result.output  # valid padding at the nearest valid size to 256


def test_models_json() -> None:
    result = run("models", "--json", "-m", "unet", "-m", "unetpp", "--in-channels", "1")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == ["unet", "unetpp"]
    unet = rows[0]
    # One input channel instead of three: 2 × 64 × 9 fewer first-conv weights.
    assert unet["parameters"] == UNET_DEFAULT_PARAMS - 2 * 64 * 9
    assert unet["gflops"] > 50


def test_models_pruning_table() -> None:
    result = run("models", "--pruning", "-m", "unetpp-small", "--size", "64", "--repeats", "1")
    assert result.exit_code == 0, result.output
    for level in ("L1", "L2", "L3", "L4"):
        assert level in result.output
    result = run("models", "--pruning", "--size", "64", "--no-latency", "--json")
    assert result.exit_code == 0, result.output
    tables = json.loads(result.output)
    assert set(tables) == {"unetpp", "unetpp-small"}
    assert [row["level"] for row in tables["unetpp"]] == [1, 2, 3, 4]
    assert all(row["latency_ms"] is None for row in tables["unetpp"])


def test_models_errors() -> None:
    result = run("models", "-m", "segformer")
    assert result.exit_code == 2
    assert "unknown model 'segformer'" in result.output
    result = run("models", "--pruning", "-m", "unet")
    assert result.exit_code == 2
    assert "cannot be pruned" in result.output


def _checkpoint(tmp_path: Path, name: str, **overrides) -> Path:
    torch.manual_seed(0)
    model = build_model(name, 3, 2, **overrides)
    size = 188 if name == "unet-valid" else 32  # the smallest valid-padding input
    model.train()(torch.randn(2, 3, size, size))  # non-default BatchNorm statistics
    save_checkpoint(tmp_path / "best.safetensors", model.eval(), classes=["_background_", "x"])
    return tmp_path / "best.safetensors"


@pytest.mark.parametrize(
    "name,overrides,extra",
    [
        ("unet-tiny", {"base_channels": 4}, []),
        ("unetpp-small", {"base_channels": 4}, ["--prune-level", "2"]),
        ("unet-valid", {"base_channels": 2}, []),
        ("unet3p", {"base_channels": 4, "cat_channels": 4, "classification_guided": True}, []),
        ("unet-r18", {"width": 4, "decoder_channels": [8, 8, 4, 4, 4]}, []),
    ],
)
def test_export_onnx_round_trip(tmp_path: Path, name: str, overrides: dict, extra: list) -> None:
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    checkpoint = _checkpoint(tmp_path, name, **overrides)
    result = run("export", checkpoint, "--onnx", "--size", "64", "--json", *extra)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert Path(report["onnx"]) == tmp_path / "best.onnx"
    assert len(report["checked"]) == 2 and all(c["ok"] for c in report["checked"])
    # Independent check: run the file ourselves on an odd size and compare.
    from segkit.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).model
    if extra:
        model.prune(2)
    size = report["input_size"] + (16 if name == "unet-valid" else -7)
    x = torch.randn(1, 3, size, size)
    session = onnxruntime.InferenceSession(report["onnx"], providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"image": x.numpy()})
    with torch.inference_mode():
        expected = model(x).numpy()
    assert actual.shape == expected.shape
    assert abs(actual - expected).max() < 1e-4
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["segkit"])["architecture"] == name


def test_export_without_onnxruntime_check_still_writes(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    checkpoint = _checkpoint(tmp_path, "unet-tiny", base_channels=4)
    target = tmp_path / "out" / "model.onnx"
    result = run("export", checkpoint, "--onnx", "--no-check", "-o", target, "--size", "32")
    assert result.exit_code == 0, result.output
    assert target.is_file() and target.stat().st_size > 1000
    assert "wrote" in result.output


def test_export_errors(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, "unet-tiny", base_channels=4)
    result = run("export", checkpoint)
    assert result.exit_code == 2
    assert "choose an export format: --onnx" in result.output
    result = run("export", tmp_path / "nothing.safetensors", "--onnx")
    assert result.exit_code == 2
    assert "nothing.safetensors: file not found" in result.output
    checkpoint.with_suffix(".json").unlink()
    result = run("export", checkpoint, "--onnx")
    assert result.exit_code == 1
    assert "metadata not found" in result.output
    checkpoint = _checkpoint(tmp_path, "unet-tiny", base_channels=4)
    result = run("export", checkpoint, "--onnx", "--prune-level", "2")
    assert result.exit_code == 2
    assert "cannot be pruned" in result.output


@pytest.mark.parametrize("own_file", [".safetensors", ".json"])
def test_export_never_overwrites_the_checkpoint(tmp_path: Path, own_file: str) -> None:
    checkpoint = Path(_checkpoint(tmp_path, "unet-tiny", base_channels=4))
    target = checkpoint.with_suffix(own_file)
    before = target.read_bytes()
    result = run("export", checkpoint, "--onnx", "--no-check", "-o", target, "--size", "32")
    assert result.exit_code == 2
    assert "is the checkpoint itself" in result.output
    assert target.read_bytes() == before


def test_export_without_onnx_package_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    import segkit.models.export

    monkeypatch.setattr(segkit.models.export, "onnx_installed", lambda: False)
    result = run("export", _checkpoint(tmp_path, "unet-tiny", base_channels=4), "--onnx")
    assert result.exit_code == 2
    assert "pip install 'segkit[onnx]'" in result.output
    assert not (tmp_path / "best.onnx").exists()
