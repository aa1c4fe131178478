"""Striped tiled inference (bounded memory) against the image-sized implementation it
replaced, kept here as the oracle, and the bound on what it allocates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from segkit.inference import (
    InferenceOptions,
    _forward,
    _valid_depth,
    class_argmax,
    gaussian_weights,
    image_to_tensor,
    mirror_pad,
    predict_mask,
    predict_probabilities,
    predict_stripes,
    reflect_index,
    tile_geometry,
    tile_grid,
)
from segkit.models import build_model

NORMALIZATION = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}


def legacy_probabilities(model: nn.Module, image: Tensor, options: InferenceOptions) -> Tensor:
    """The pre-stripe implementation: the whole image mirror-padded at once and a
    ``K × H × W`` canvas with its weight sum (segkit 0.x before the memory bound)."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    geo = tile_geometry(height, width, options.tile, _valid_depth(model))
    padded = mirror_pad(
        image.float(),
        geo.margin_h,
        geo.margin_h + geo.canvas_h - height,
        geo.margin_w,
        geo.margin_w + geo.canvas_w - width,
    )
    starts = tile_grid(geo, options.overlap)
    if options.blend == "gaussian" and len(starts) > 1:
        weight = gaussian_weights(geo.out_h, geo.out_w)
    else:
        weight = torch.ones(geo.out_h, geo.out_w)
    canvas: Tensor | None = None
    total = torch.zeros(geo.canvas_h, geo.canvas_w)
    model.eval()
    with torch.inference_mode():
        for first in range(0, len(starts), options.batch_size):
            group = starts[first : first + options.batch_size]
            crops = torch.stack([padded[:, y : y + geo.in_h, x : x + geo.in_w] for y, x in group])
            probs = _forward(model, crops, options.flip_tta)
            if canvas is None:
                canvas = torch.zeros(probs.shape[1], geo.canvas_h, geo.canvas_w)
            for (y, x), tile_probs in zip(group, probs, strict=True):
                canvas[:, y : y + geo.out_h, x : x + geo.out_w] += tile_probs * weight
                total[y : y + geo.out_h, x : x + geo.out_w] += weight
    assert canvas is not None
    return (canvas / total)[:, :height, :width]


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(3)
    return {
        "unet-tiny": build_model("unet-tiny", 3, 3, base_channels=2, depth=2).eval(),
        "unet-valid": build_model("unet-valid", 3, 4, base_channels=2, depth=2).eval(),
        "sigmoid": nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1)),
    }


MODELS = _models()


@given(
    st.integers(-40, 40),
    st.integers(0, 30),
    st.integers(1, 9),
)
def test_reflect_index_is_mirror_pad_per_position(start: int, length: int, size: int) -> None:
    axis = torch.arange(size, dtype=torch.float32)[None, None, :]
    before, after = max(0, -start), max(0, start + length - size)
    padded = mirror_pad(axis, 0, 0, before, after)[0, 0]
    expected = padded[start + before : start + before + length].long().tolist()
    assert reflect_index(start, start + length, size).tolist() == expected


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(MODELS)),
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    tile=st.one_of(st.none(), st.integers(4, 40)),
    overlap=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]),
    batch_size=st.integers(1, 5),
    pixels=st.booleans(),
    flip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_striped_inference_equals_the_image_sized_oracle(
    name, height, width, tile, overlap, batch_size, pixels, flip, seed
) -> None:
    """Same tiles, same batches, same sums in the same order: equal to the last bit."""
    model = MODELS[name]
    rng = np.random.default_rng(seed)
    decoded = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor = image_to_tensor(decoded, NORMALIZATION)
    options = InferenceOptions(tile=tile, overlap=overlap, batch_size=batch_size, flip_tta=flip)
    expected = legacy_probabilities(model, tensor, options)
    image = decoded if pixels else tensor
    probs = predict_probabilities(model, image, options, normalization=NORMALIZATION)
    assert probs.shape == expected.shape
    assert torch.equal(probs, expected)
    stripes: list[tuple[int, int]] = []
    predict_stripes(
        model, image, options, lambda top, p: stripes.append((top, p.shape[1])),
        normalization=NORMALIZATION,
    )  # fmt: skip
    assert [top for top, _ in stripes] == list(np.cumsum([0] + [n for _, n in stripes])[:-1])
    assert sum(n for _, n in stripes) == height
    mask = predict_mask(model, image, options, normalization=NORMALIZATION)
    single = expected.shape[0] == 1
    want = (expected[0] > 0.5).to(torch.uint8) if single else expected.argmax(0).to(torch.uint8)
    assert torch.equal(mask, want)


class _LargestTensor(TorchDispatchMode):
    """The bytes of the largest tensor any torch operation returns inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, (list, tuple)) else (out,):
            if isinstance(item, Tensor):
                self.largest = max(self.largest, item.numel() * item.element_size())
        return out


@pytest.mark.parametrize(("height", "width"), [(160, 50), (97, 131)])
def test_tiled_allocations_are_bounded_by_the_tile_not_the_image(height, width) -> None:
    """No tensor grows with the image height: the largest is a band of tile rows across
    the width (or a batch of tile activations), never a ``K × H × W`` canvas."""
    model = MODELS["unet-tiny"]
    classes, tile, batch = 3, 16, 2
    decoded = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    options = InferenceOptions(tile=tile, overlap=0.25, batch_size=batch)
    with _LargestTensor() as largest:
        mask = predict_mask(model, decoded, options, normalization=NORMALIZATION)
    assert mask.shape == (height, width)
    band = classes * 2 * tile * width * 4  # float32, at most a tile and a stride of rows
    activations = batch * 2 * 16 * tile * tile * 4  # widest unet-tiny layer, fp32, 2× slack
    assert largest.largest <= max(band, activations)
    assert largest.largest < classes * height * width * 4 / 2  # the old canvas


def test_decoded_pixels_are_never_copied_whole() -> None:
    """numpy (traced by tracemalloc) holds a tile's crop at a time, not a uint8 or float
    copy of the image; the image is large next to Python's own small allocations."""
    import tracemalloc

    model = MODELS["unet-tiny"]
    decoded = np.random.default_rng(1).integers(0, 256, (480, 320, 3), dtype=np.uint8)
    options = InferenceOptions(tile=64, overlap=0.25, batch_size=4)
    predict_mask(model, decoded[:80, :80], options)  # first-call caches
    tracemalloc.start()
    try:
        predict_mask(model, decoded, options, normalization=NORMALIZATION)
        _, numpy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert numpy_peak < decoded.size // 3  # a third of one uint8 copy


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(0, 2),
    st.integers(0, 2**16),
)
def test_class_argmax_is_torch_argmax_ties_included(classes, height, width, dim, seed) -> None:
    """Coarse values make ties common: the first of equal values wins, as in torch."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 3, (classes, height, width), generator=generator).float()
    values = values.movedim(0, dim)
    expected = values.argmax(dim).to(torch.uint8)
    assert torch.equal(class_argmax(values, dim), expected)


@pytest.mark.parametrize("flip_tta", [False, True])
@pytest.mark.parametrize("stripe_pixels", [1 << 18, 530])  # one stripe; four stripes
def test_the_one_tile_fast_path_equals_the_band_path_to_the_bit(
    monkeypatch: pytest.MonkeyPatch, flip_tta: bool, stripe_pixels: int
) -> None:
    import segkit.inference as inference

    size = (37, 53)
    monkeypatch.setattr(inference, "STRIPE_PIXELS", stripe_pixels)
    torch.manual_seed(0)
    model = build_model("unet-tiny", 3, 3)
    pixels = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    options = InferenceOptions(flip_tta=flip_tta)
    geo = tile_geometry(*size, None)
    assert inference._one_tile_is_the_image(geo, tile_grid(geo, options.overlap), *size)
    stripes: list[tuple[int, int]] = []
    fast = predict_stripes(
        model, pixels, options, lambda top, p: stripes.append((top, p.shape[1])),
        normalization=NORMALIZATION,
    )  # fmt: skip
    assert fast is None and stripes[0][0] == 0
    assert len(stripes) == -(-size[0] // max(1, stripe_pixels // size[1]))
    assert sum(rows for _, rows in stripes) == size[0]  # every row once, in order
    assert [top for top, _ in stripes] == sorted({top for top, _ in stripes})
    whole = predict_probabilities(model, pixels, options, normalization=NORMALIZATION)
    monkeypatch.setattr(inference, "_one_tile_is_the_image", lambda *args: False)
    banded = predict_probabilities(model, pixels, options, normalization=NORMALIZATION)
    assert torch.equal(whole, banded)
