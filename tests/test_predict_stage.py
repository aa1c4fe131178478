"""predict.stage's pure parts: uncertainty against scipy, options, input collection."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from segkit.errors import OptionError
from segkit.inference import InferenceOptions, predict_probabilities, predict_stripes
from segkit.models import build_model
from segkit.predict.stage import (
    LOW_CONFIDENCE,
    PredictOptions,
    StripeOutputs,
    collect_inputs,
    match_channels,
    rank_rows,
    uncertainty,
)


def test_uncertainty_matches_scipy_entropy() -> None:
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(3, 300, 7) * 2, 0)  # more rows than one block
    mean_entropy, low = uncertainty(probs)
    expected = entropy(probs.numpy().astype(np.float64), axis=0, base=3).mean()
    assert mean_entropy == pytest.approx(expected, rel=1e-5)
    assert low == pytest.approx(float((probs.max(0).values < LOW_CONFIDENCE).float().mean()))
    # A sigmoid map counts as two classes: p = 0.5 everywhere is maximal entropy.
    assert uncertainty(torch.full((1, 4, 4), 0.5)) == pytest.approx((1.0, 1.0))
    assert uncertainty(torch.ones(1, 4, 4)) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_rank_rows_most_uncertain_first_ties_by_low_confidence() -> None:
    rows = [
        {"id": "a", "image": "a.png", "mean_entropy": 0.1, "low_confidence_share": 0.0},
        {"id": "b", "image": "b.png", "mean_entropy": 0.5, "low_confidence_share": 0.1},
        {"id": "c", "image": "c.png", "mean_entropy": 0.5, "low_confidence_share": 0.3},
    ]
    assert [r["id"] for r in rank_rows(rows)] == ["c", "b", "a"]
    assert [r["rank"] for r in rank_rows(rows)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tta": "rotate"}, "--tta"),
        ({"rank": "random"}, "--rank"),
        ({"tile": 64, "overlap": 64}, "smaller than --tile"),
        ({"tile": 4}, "at least 8"),
        ({"simplify": -1.0}, "--simplify"),
        ({"embed_image": True}, "needs --labelme"),
        ({"checkpoint": "final"}, "--checkpoint"),
        ({"batch_size": 0}, "--batch-size"),
        ({"max_pixels": 0}, "--max-pixels"),
    ],
)
def test_bad_options_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        PredictOptions(run=Path("run"), **kwargs)


def test_collect_inputs_recurses_skips_the_output_and_refuses_clashes(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "out" / "masks").mkdir(parents=True)
    for name in ("a.JPG", "sub/b.tiff", "notes.txt", "out/masks/a.png"):
        (tmp_path / "in" / name).write_bytes(b"")
    found = collect_inputs([tmp_path / "in"], tmp_path / "in" / "out")
    assert [(i.id, i.path.name) for i in found] == [("a", "a.JPG"), ("sub/b", "b.tiff")]
    (tmp_path / "in" / "a.png").write_bytes(b"")
    with pytest.raises(OptionError, match="share an output name"):
        collect_inputs([tmp_path / "in"], tmp_path / "elsewhere")
    with pytest.raises(OptionError, match="no such image"):
        collect_inputs([tmp_path / "missing"], tmp_path / "o")


@pytest.mark.parametrize("classes", [1, 3])
def test_stripe_outputs_equal_what_the_whole_probability_map_gives(classes: int) -> None:
    """Mask, uncertainty and the .npy bytes built stripe by stripe (the file written in
    place) are those of the whole ``K × H × W`` map: np.save's bytes, argmax, uncertainty."""
    torch.manual_seed(2)
    model = build_model("unet-tiny", 3, classes, base_channels=2, depth=2)
    pixels = np.random.default_rng(4).integers(0, 256, (45, 23, 3), dtype=np.uint8)
    options = InferenceOptions(tile=12, overlap=0.3, batch_size=3)
    file = io.BytesIO()
    outputs = StripeOutputs(45, 23, file)
    predict_stripes(model, pixels, options, outputs)
    probs = predict_probabilities(model, pixels, options)
    if classes == 1:
        probs = torch.cat([1 - probs, probs])
    expected = io.BytesIO()
    np.save(expected, probs.to(torch.float16).numpy())
    assert file.getvalue() == expected.getvalue()
    assert np.array_equal(outputs.mask, probs.argmax(0).to(torch.uint8).numpy())
    assert outputs.uncertainty() == pytest.approx(uncertainty(probs), rel=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgb_to_gray_in_row_blocks_equals_the_whole_image_formula(dtype: type) -> None:
    pixels = np.random.default_rng(7).integers(0, np.iinfo(dtype).max, (600, 9, 3), dtype=dtype)
    whole = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    gray, note = match_channels(pixels, 1, Path("a.png"))
    assert gray.dtype == dtype and np.array_equal(gray[:, :, 0], np.round(whole).astype(dtype))
    assert note == "a.png: RGB image converted to grayscale for the model"
