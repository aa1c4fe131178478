"""Fuzzing checkpoint sidecars (and the tensors beside them): a model or one CheckpointError line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers_fuzz import FUZZ, FUZZ_SLOW, json_values, mutate, result_or_segkit_error
from hypothesis import given
from hypothesis import strategies as st

from segkit.checkpoint import (
    CheckpointMeta,
    LoadedCheckpoint,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from segkit.errors import CheckpointError
from segkit.models import build_model


class Saved(NamedTuple):
    """A real checkpoint's base path and its files' original contents."""

    base: Path
    sidecar: str
    tensors: bytes

    def __repr__(self) -> str:  # hypothesis prints it with every failure
        return f"Saved({self.base})"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    folder = tmp_path_factory.mktemp("fuzz_checkpoint")
    model = build_model("unet-tiny", 3, 2, base_channels=4)
    tensors, sidecar = save_checkpoint(folder / "best", model, classes=["_background_", "cat"])
    return Saved(folder / "best", sidecar.read_text(), tensors.read_bytes())


def _load(base: Path) -> None:
    meta = result_or_segkit_error(lambda: read_checkpoint_meta(base))
    assert isinstance(meta, CheckpointMeta | CheckpointError)
    if isinstance(meta, CheckpointMeta):
        loaded = result_or_segkit_error(lambda: load_checkpoint(base, verify_hash=False))
        assert isinstance(loaded, LoadedCheckpoint | CheckpointError)


@FUZZ_SLOW
@given(st.data())
def test_sidecar_with_one_field_changed(saved: Saved, data: st.DataObject) -> None:
    """Any field of a real sidecar replaced (model sizes included): loaded, or one line;
    a huge model is refused before any memory is allocated for it."""
    base, sidecar, _ = saved
    sidecar_path = base.with_name("best.json")
    try:
        sidecar_path.write_text(json.dumps(mutate(json.loads(sidecar), data)))
        _load(base)
    finally:
        sidecar_path.write_text(sidecar)


@FUZZ
@given(json_values)
def test_sidecar_any_json(saved: Saved, value: object) -> None:
    base, sidecar, _ = saved
    sidecar_path = base.with_name("best.json")
    try:
        sidecar_path.write_text(json.dumps(value))
        _load(base)
    finally:
        sidecar_path.write_text(sidecar)


@FUZZ_SLOW
@given(st.integers(0, 10**6), st.binary(min_size=1, max_size=16), st.booleans())
def test_damaged_tensors(saved: Saved, where: int, junk: bytes, cut: bool) -> None:
    """A tensors file cut short or overwritten anywhere (its header too): loaded, or one line."""
    base, _, tensors = saved
    tensors_path = base.with_name("best.safetensors")
    where %= len(tensors)
    damaged = tensors[:where] if cut else tensors[:where] + junk + tensors[where + len(junk) :]
    try:
        tensors_path.write_bytes(damaged)
        _load(base)  # without the hash check: the damage itself must be caught, or harmless
        if damaged != tensors:
            assert isinstance(
                result_or_segkit_error(lambda: load_checkpoint(base)), CheckpointError
            )
    finally:
        tensors_path.write_bytes(tensors)


def test_huge_model_in_a_sidecar_is_refused_without_building_it(
    saved: Saved,
) -> None:
    """base_channels 5000 would be a U-Net of 189 billion parameters: refused from the
    tensors' header, before any memory is allocated for it."""
    base, sidecar, _ = saved
    doc = json.loads(sidecar)
    doc["model_kwargs"] = {"base_channels": 5000}
    try:
        base.with_name("best.json").write_text(json.dumps(doc))
        with pytest.raises(CheckpointError, match=r"weights do not fit 'unet-tiny': shape: "):
            load_checkpoint(base, verify_hash=False)
    finally:
        base.with_name("best.json").write_text(sidecar)
