"""Training data: augmentation keeps masks as ids and aligned, mask checks, sampler, decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers_train import make_voc
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.dataset import open_dataset
from segkit.errors import DatasetError
from segkit.train.augment import AugmentSettings, PairedAugment
from segkit.train.data import (
    EpochSampler,
    TrainSet,
    class_shares,
    invalid_mask_values,
    read_image,
    scan_samples,
    split_files,
)
from segkit.voc import encode_palette_png


def blocks(height: int, width: int, block: int, classes: int) -> torch.Tensor:
    """A coordinate pattern: class id of each ``block``-sized cell, varying along x and y."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((yy // block) * 7 + (xx // block) * 3) % classes


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    height=st.integers(12, 40),
    width=st.integers(12, 40),
    crop=st.integers(8, 48),
    classes=st.integers(2, 9),
)
def test_masks_stay_ids_and_aligned_with_image_and_weights(seed, height, width, crop, classes):
    mask = blocks(height, width, 10, classes)[None]
    # The image and the weight map encode the same ids, so every transform must move them
    # together: image by bilinear resampling, weight map and mask by nearest.
    image = (mask.float() / classes)[:, None].repeat(1, 3, 1, 1)
    weight = mask.float() * 10 + 1
    augment = PairedAugment(AugmentSettings(crop=crop, brightness=0, contrast=0, elastic=0.5))
    torch.manual_seed(seed)
    out_image, out_mask, out_weight = augment(image, mask, weight)
    assert out_mask.dtype == torch.int64 and out_mask.shape == (1, crop, crop)
    values = set(out_mask.unique().tolist())
    assert values <= set(range(classes)) | {255}
    labelled = out_mask != 255
    # Weight maps travel with the mask exactly (nearest, same parameters).
    assert torch.equal(out_weight[labelled], out_mask[labelled].float() * 10 + 1)
    # Where a pixel's 5×5 neighbourhood holds one id, the bilinear image shows that id
    # (a shift by one pixel would be off by at least 1/classes).
    padded = torch.nn.functional.pad(out_mask.float(), (2, 2, 2, 2), value=-1)[:, None]
    low = -torch.nn.functional.max_pool2d(-padded, 5, 1)[:, 0]
    high = torch.nn.functional.max_pool2d(padded, 5, 1)[:, 0]
    interior = (low == high) & labelled
    expected = out_mask.float() / classes
    assert torch.allclose(out_image[:, 0][interior], expected[interior], atol=0.01)
    # Not vacuous: a crop that is mostly labelled holds uniform neighbourhoods (blocks of
    # 10 px stay wider than 5 px under the augmentation's scaling).
    assert interior.any() or labelled.sum() < crop * crop // 2 or crop < 16


def test_padding_is_ignore_and_flips_move_everything():
    mask = torch.tensor([[[0, 1], [2, 1]]])
    image = mask[:, None].float() / 2
    augment = PairedAugment(AugmentSettings(crop=4, enabled=False))
    torch.manual_seed(0)
    _, out_mask, out_weight = augment(image, mask, None)
    assert out_weight is None
    assert (out_mask == 255).sum() == 12 and sorted(out_mask[out_mask != 255].tolist()) == [
        0,
        1,
        1,
        2,
    ]


def test_invalid_mask_values_lists_every_file(tmp_path: Path):
    root = make_voc(tmp_path / "voc")
    bad = np.zeros((32, 32), np.uint8)
    bad[0, :3] = [3, 7, 255]
    (root / "SegmentationClass" / "img001.png").write_bytes(encode_palette_png(bad))
    (root / "SegmentationClass" / "img009.png").write_bytes(encode_palette_png(bad + 5))
    dataset = open_dataset(root)
    train, val = split_files(dataset, "train"), split_files(dataset, "val")
    with pytest.raises(DatasetError) as caught:
        scan_samples(train, val, 3)
    message = str(caught.value)
    assert "img001.png: values [3, 7]" in message
    assert "img009.png: values [4, 5, 8, 12]" in message
    assert "\n" not in message


def test_scan_histogram_normalisation_and_cache(tmp_path: Path):
    root = make_voc(tmp_path / "voc", n_train=3, n_val=1)
    dataset = open_dataset(root)
    train, val = split_files(dataset, "train"), split_files(dataset, "val")
    scan = scan_samples(train, val, 3)
    masks = [np.asarray(PIL.Image.open(f.mask)) for f in train]
    assert (
        scan.histogram[:3].tolist()
        == np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=3).tolist()
    )
    pixels = (
        np.concatenate([np.asarray(PIL.Image.open(f.image)).reshape(-1, 3) for f in train]) / 255
    )
    assert np.allclose(scan.normalization.mean, pixels.mean(0))
    assert np.allclose(scan.normalization.std, pixels.std(0))
    assert scan.cache is not None and len(scan.cache) == 4
    assert scan_samples(train, val, 3, cache_budget=100).cache is None
    shares = class_shares(scan.histogram, 3)
    assert abs(sum(shares) - 1) < 1e-9


def test_read_image_gray_rgb_and_16_bit(tmp_path: Path):
    gray16 = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    PIL.Image.fromarray(gray16).save(tmp_path / "a.png")
    array = read_image(tmp_path / "a.png")
    assert array.dtype == np.uint16 and array.shape == (3, 4, 1)
    assert np.array_equal(array[:, :, 0], gray16)
    PIL.Image.fromarray(np.zeros((3, 4), np.uint8)).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").shape == (3, 4, 1)
    (tmp_path / "c.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"c\.png: cannot read image"):
        read_image(tmp_path / "c.png")
    assert invalid_mask_values(np.array([[0, 2, 255]], np.uint8), 3) == []


def test_sampler_is_a_function_of_seed_and_epoch_and_shards_ranks():
    full = list(EpochSampler(10, seed=3, epoch=2))
    assert full == list(EpochSampler(10, seed=3, epoch=2))
    assert full != list(EpochSampler(10, seed=3, epoch=3))
    assert sorted(index for index, _ in full) == list(range(10))
    assert list(EpochSampler(10, seed=3, epoch=2, skip=4)) == full[4:]
    ranks = [list(EpochSampler(10, seed=3, epoch=2, rank=r, world=3)) for r in range(3)]
    assert [len(r) for r in ranks] == [3, 3, 3]
    assert sorted(item for rank in ranks for item in rank) == sorted(full[:9])


def test_items_do_not_depend_on_the_order_they_are_drawn(tmp_path: Path):
    root = make_voc(tmp_path / "voc", n_train=3, n_val=1)
    dataset = open_dataset(root)
    train = split_files(dataset, "train")
    scan = scan_samples(train, [], 3)
    items = TrainSet(train, scan, AugmentSettings(crop=24))
    first = items[(1, 42)]
    items[(0, 7)]
    again = items[(1, 42)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (3, 24, 24) and first[1].dtype == torch.int64


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_workers_start_as_segkit_pools_do(workers: int) -> None:
    """Loader workers use the pools' start method (fork on Linux, not 3.14's forkserver),
    and a loader without workers gets no context, which torch would refuse."""
    from torch.utils.data import DataLoader

    from segkit.parallel import pool_context
    from segkit.train.stage import loader_options

    options = loader_options(workers, pin_memory=False)
    loader = DataLoader(list(range(4)), batch_size=2, **options)
    assert loader.num_workers == workers
    if workers:
        method = loader.multiprocessing_context.get_start_method()
        assert method == pool_context().get_start_method()
        assert list(loader) and [b.tolist() for b in loader] == [[0, 1], [2, 3]]
    else:
        assert loader.multiprocessing_context is None
