"""Fuzzing the dataset readers: PNG masks, the manifest, split files, groups CSV, weights.json.

Each ends in a result or one ``SegkitError`` line, never another exception or a hang.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from helpers_fuzz import FUZZ, FUZZ_SLOW, json_values, mutate, result_or_segkit_error
from hypothesis import given
from hypothesis import strategies as st
from voc_builder import write_voc

from segkit.dataset import open_dataset
from segkit.errors import SegkitError
from segkit.manifest import load_manifest, manifest_path
from segkit.report.stage import read_prediction
from segkit.split_stage import read_groups_csv
from segkit.validate_stage import validate_dataset
from segkit.voc import read_mask, read_split_file, voc_colormap
from segkit.weights_stage import load_weights, weights_path

PALETTE = voc_colormap(256)
MODES = ("1", "L", "P", "LA", "RGB", "RGBA", "I", "I;16", "F", "CMYK")


def _png(mode: str, size: tuple[int, int], seed: int) -> bytes:
    values = np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    image = PIL.Image.fromarray(values, "L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode in ("I", "F", "CMYK") else "PNG")
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on damaged TIFF tags
@FUZZ
@given(
    st.sampled_from(MODES),
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    st.integers(0, 2**16),
    st.sampled_from(["keep", "cut", "flip"]),
    st.sampled_from(["class", "instance"]),
)
def test_mask_reader(
    tmp_path: Path, mode: str, size: tuple[int, int], seed: int, damage: str, kind: str
) -> None:
    """Masks of every mode, whole, cut short or with one byte changed: ids or one line."""
    data = bytearray(_png(mode, size, seed))
    where = seed % len(data)
    if damage == "cut":
        data = data[:where]
    elif damage == "flip":
        data[where] ^= 1 + seed % 255
    path = tmp_path / "mask.png"
    path.write_bytes(bytes(data))
    _read_as_masks(path, kind)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ
@given(st.binary(max_size=300))
def test_mask_reader_any_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "mask.png"
    path.write_bytes(raw)
    _read_as_masks(path, "class")


def _read_as_masks(path: Path, kind: str) -> None:
    """Read ``path`` as a dataset mask and as a prediction ``report --pred`` scores."""
    outcome = result_or_segkit_error(lambda: read_mask(path, kind))  # type: ignore[arg-type]
    if isinstance(outcome, SegkitError):
        assert str(outcome).startswith(f"{path}: ")
    else:
        assert outcome.ndim == 2 and outcome.dtype in (np.uint8, np.uint16)
    predicted = result_or_segkit_error(lambda: read_prediction(path, PALETTE, 3))
    if isinstance(predicted, SegkitError):
        assert str(predicted).startswith(f"{path}: ")
    else:
        assert predicted.ndim == 2 and predicted.dtype == np.uint8


@FUZZ
@given(st.binary(max_size=200))
def test_split_file_any_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "train.txt"
    path.write_bytes(raw)
    outcome = result_or_segkit_error(lambda: read_split_file(path))
    if isinstance(outcome, list):
        assert all(stem and stem == stem.strip() for stem in outcome)


#: Stems split accepts (it refuses line breaks and surrounding spaces before reading groups).
stems = st.text(min_size=1, max_size=4).filter(
    lambda s: s == s.strip() and len(s.splitlines()) == 1
)


@FUZZ
@given(st.text(max_size=120), st.lists(stems, max_size=4))
def test_groups_csv_any_text(tmp_path: Path, text: str, stems: list[str]) -> None:
    path = tmp_path / "groups.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    outcome = result_or_segkit_error(lambda: read_groups_csv(path, stems))
    if not isinstance(outcome, SegkitError):
        groups, _ = outcome
        assert set(groups) == set(stems)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two samples with a manifest, split files and a weights.json."""
    root = tmp_path_factory.mktemp("fuzz_voc")
    mask = np.zeros((6, 6), np.uint8)
    mask[1:4, 1:4] = 1
    write_voc(
        root,
        {"a": mask, "b": mask.T.copy()},
        images={"a": np.zeros((6, 6, 3), np.uint8), "b": np.ones((6, 6, 3), np.uint8)},
        classes=["_background_", "cat"],
        splits={"train": ["a"], "val": ["b"]},
        manifest={"source": "fuzz"},
    )
    weights = {
        "scheme": "median_frequency",
        "class_weights": [0.5, 2.0],
        "classes": [{"name": "_background_"}, {"name": "cat"}],
        "split": "train",
        "maps": {},
    }
    weights_path(root).write_text(json.dumps(weights))
    return root


def _restore(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text, encoding="utf-8", errors="surrogatepass")


@FUZZ_SLOW
@given(st.data())
def test_manifest_reader(dataset: Path, data: st.DataObject) -> None:
    """A manifest with any field changed (or any JSON): read and validated, or one line."""
    original = manifest_path(dataset).read_text()
    value = data.draw(st.one_of(json_values, st.just(None)).map(lambda v: v))
    changed = mutate(json.loads(original), data) if data.draw(st.booleans()) else value
    try:
        _restore(dataset, "segkit.json", json.dumps(changed))
        if result_or_segkit_error(lambda: load_manifest(dataset)) is not None:
            result_or_segkit_error(lambda: validate_dataset(dataset, workers=1))
    finally:
        _restore(dataset, "segkit.json", original)


@FUZZ
@given(st.data())
def test_weights_json_reader(dataset: Path, data: st.DataObject) -> None:
    path = weights_path(dataset)
    original = path.read_text()
    try:
        path.write_text(json.dumps(mutate(json.loads(original), data)))
        outcome = result_or_segkit_error(lambda: load_weights(dataset))
        if not isinstance(outcome, SegkitError):
            assert all(p.resolve().is_relative_to(dataset.resolve()) for p in outcome.maps.values())
    finally:
        path.write_text(original)


@FUZZ_SLOW
@given(st.binary(max_size=120))
def test_split_files_in_a_dataset(dataset: Path, raw: bytes) -> None:
    """A broken val.txt: the dataset opens, and validate reports findings or one line."""
    path = dataset / "ImageSets/Segmentation/val.txt"
    original = path.read_bytes()
    try:
        path.write_bytes(raw)
        assert open_dataset(dataset).ids == ["a", "b"]
        result_or_segkit_error(lambda: validate_dataset(dataset, workers=1))
    finally:
        path.write_bytes(original)
