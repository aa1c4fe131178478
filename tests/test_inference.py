"""segkit.inference: tile arithmetic, mirror padding, and tiled == whole-image prediction."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from segkit.errors import OptionError
from segkit.inference import (
    InferenceOptions,
    gaussian_weights,
    image_to_tensor,
    mirror_pad,
    predict_batch,
    predict_mask,
    predict_probabilities,
    probabilities_to_mask,
    tile_geometry,
    tile_starts,
)
from segkit.models import build_model


@given(st.integers(1, 200), st.integers(1, 64), st.integers(1, 64))
def test_tile_starts_cover_exactly(length: int, tile: int, stride: int) -> None:
    stride = min(stride, tile)  # a stride over the tile would leave gaps by design
    starts = tile_starts(length, tile, stride)
    covered = np.zeros(max(length, tile), bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered[:length].all()
    assert starts == sorted(set(starts)) and starts[0] == 0
    assert starts[-1] + tile == max(length, tile)
    assert all(b - a <= stride for a, b in itertools.pairwise(starts))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 6),
    st.tuples(*[st.integers(0, 13)] * 4),
)
def test_mirror_pad_equals_numpy_reflect(height: int, width: int, pads) -> None:
    top, bottom, left, right = pads
    image = np.arange(2 * height * width, dtype=np.float32).reshape(2, height, width)
    ours = mirror_pad(torch.from_numpy(image), top, bottom, left, right).numpy()
    expected = np.pad(
        image, ((0, 0), (top, bottom), (0, 0)), mode="reflect" if height > 1 else "edge"
    )
    expected = np.pad(
        expected, ((0, 0), (0, 0), (left, right)), mode="reflect" if width > 1 else "edge"
    )
    np.testing.assert_array_equal(ours, expected)


def test_mirror_pad_one_pixel_axis_repeats() -> None:
    image = torch.tensor([[[1.0, 2.0]]])
    assert mirror_pad(image, 2, 1, 0, 0)[0, :, 0].tolist() == [1.0] * 4


def test_gaussian_weights_peak_in_the_middle_and_never_zero() -> None:
    w = gaussian_weights(9, 16)
    assert w.shape == (9, 16) and float(w.max()) == 1.0 and float(w.min()) > 0
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.flip(1))
    assert float(w[4, 7]) > float(w[0, 0])


def _pixel_model(in_channels: int = 3, classes: int = 4) -> nn.Module:
    """A per-pixel model: tiled and whole-image outputs must then agree exactly."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(in_channels, classes, 1))


@pytest.mark.parametrize("tile", [None, 8, 13, 64])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_tiled_equals_whole_for_a_per_pixel_model(tile, batch_size) -> None:
    model = _pixel_model()
    image = torch.rand(3, 29, 21)
    options = InferenceOptions(tile=tile, overlap=0.5, batch_size=batch_size)
    probs = predict_probabilities(model, image, options)
    expected = torch.softmax(model(image[None]), dim=1)[0]
    assert probs.shape == (4, 29, 21)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)
    mask = predict_mask(model, image, options)
    assert mask.dtype == torch.uint8 and torch.equal(mask, expected.argmax(0).to(torch.uint8))


def test_flip_tta_of_a_flip_invariant_model_changes_nothing() -> None:
    model = _pixel_model()
    image = torch.rand(3, 12, 10)
    plain = predict_probabilities(model, image, InferenceOptions(tile=6))
    flipped = predict_probabilities(model, image, InferenceOptions(tile=6, flip_tta=True))
    torch.testing.assert_close(plain, flipped, atol=1e-6, rtol=1e-5)


def test_flip_tta_averages_the_flipped_passes() -> None:
    class LeftEdge(nn.Module):  # logit 1 for class 1 in the first column only
        def __init__(self) -> None:
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(x.shape[0], 2, *x.shape[-2:])
            logits[:, 1, :, 0] = 10.0
            return logits

    probs = predict_probabilities(LeftEdge(), torch.zeros(1, 4, 5), InferenceOptions(flip_tta=True))
    p = float(torch.softmax(torch.tensor([0.0, 10.0]), 0)[1])
    # Identity and vertical flip mark column 0, the horizontal flip marks column 4.
    assert float(probs[1, 0, 0]) == pytest.approx((2 * p + 0.5) / 3, abs=1e-6)
    assert float(probs[1, 0, 4]) == pytest.approx((p + 1.0) / 3, abs=1e-6)


def test_valid_padding_unet_tiled_equals_whole_and_covers_the_image() -> None:
    model = build_model("unet-valid", 1, 3, base_channels=2, depth=2)
    image = torch.rand(1, 23, 30)
    whole = predict_probabilities(model, image)
    tiled = predict_probabilities(model, image, InferenceOptions(tile=9, overlap=0.3))
    assert whole.shape == tiled.shape == (3, 23, 30)
    # Every output pixel sees the same mirrored context in both, so they agree.
    torch.testing.assert_close(whole, tiled, atol=1e-5, rtol=1e-4)
    geo = tile_geometry(23, 30, None, valid_depth=2)
    padded = np.pad(
        image.numpy(),
        (
            (0, 0),
            (geo.margin_h, geo.margin_h + geo.canvas_h - 23),
            (geo.margin_w, geo.margin_w + geo.canvas_w - 30),
        ),
        mode="reflect",
    )
    with torch.no_grad():
        direct = torch.softmax(model.eval()(torch.from_numpy(padded)[None]), 1)[0]
    torch.testing.assert_close(whole, direct[:, :23, :30], atol=1e-5, rtol=1e-4)


def test_image_smaller_than_the_tile_is_mirrored_up() -> None:
    model = build_model("unet-tiny", 3, 2, base_channels=2, depth=2)
    image = torch.rand(3, 5, 7)
    assert predict_probabilities(model, image, InferenceOptions(tile=32)).shape == (2, 5, 7)


def test_model_mode_restored_and_deep_supervision_lists_handled() -> None:
    model = build_model("unetpp-small", 3, 3, base_channels=2, depth=2)
    model.train()
    probs = predict_probabilities(model, torch.rand(3, 16, 16), InferenceOptions(tile=8))
    assert model.training and probs.shape == (3, 16, 16)
    torch.testing.assert_close(probs.sum(0), torch.ones(16, 16))

    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [self.conv(x) * 0, self.conv(x)]

    heads = Heads()
    image = torch.rand(3, 6, 6)
    expected = torch.softmax(heads.conv(image[None]), 1)[0]
    torch.testing.assert_close(predict_probabilities(heads, image), expected)


def test_single_logit_head_gives_foreground_probability() -> None:
    model = _pixel_model(1, 1)
    image = torch.rand(1, 6, 7)
    probs = predict_probabilities(model, image, InferenceOptions(tile=4))
    torch.testing.assert_close(probs, torch.sigmoid(model(image[None]))[0], atol=1e-6, rtol=0)
    mask = predict_mask(model, image)
    assert set(mask.unique().tolist()) <= {0, 1}


def test_image_to_tensor_scales_and_normalises() -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255
    t = image_to_tensor(rgb, {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    assert t.shape == (3, 2, 3) and t[0].eq(1).all() and t[1].eq(-1).all()
    gray16 = np.full((2, 2), 65535, np.uint16)
    assert image_to_tensor(gray16).eq(1).all()
    with pytest.raises(ValueError, match="2 means"):
        image_to_tensor(rgb, {"mean": [0.5, 0.5], "std": [1, 1]})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": 0}, "tile"),
        ({"overlap": 1.0}, "overlap"),
        ({"batch_size": 0}, "batch_size"),
        ({"blend": "max"}, "blend"),
    ],
)
def test_bad_options_raise(kwargs, message) -> None:
    with pytest.raises(OptionError, match=message):
        InferenceOptions(**kwargs)


@pytest.mark.parametrize("tile", [None, 7])
@pytest.mark.parametrize("name", ["unet-tiny", "unet-valid"])
def test_predict_batch_equals_image_by_image(tile, name) -> None:
    kwargs = {"base_channels": 2, "depth": 2}
    model = build_model(name, 3, 3, **kwargs)
    images = torch.rand(3, 3, 16, 12)
    options = InferenceOptions(tile=tile, batch_size=2)
    batch = predict_batch(model, images, options)
    single = torch.stack([predict_probabilities(model, image, options) for image in images])
    assert batch.shape == (3, 3, 16, 12)
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-4)
    masks = probabilities_to_mask(batch)
    assert masks.shape == (3, 16, 12) and masks.dtype == torch.uint8
    assert torch.equal(masks[1], probabilities_to_mask(single[1]))


@pytest.mark.parametrize(
    "image",
    [
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.arange(36, dtype=np.uint8).reshape(3, 4, 3),
        np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000,
        np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
    ],
    ids=["gray8", "rgb8", "gray16", "float"],
)
def test_image_to_tensor_of_a_read_only_array_warns_nothing(image: np.ndarray) -> None:
    """Cached decoded images are read-only; torch.from_numpy would warn on them."""
    expected = image_to_tensor(image.copy())
    image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = image_to_tensor(image)
    assert torch.equal(tensor, expected) and tensor.dtype == torch.float32
    assert not image.flags.writeable  # the input is left as it was
