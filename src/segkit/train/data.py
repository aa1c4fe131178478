"""Training data: VOC split → decoded arrays (cached in memory) → augmented, normalised tensors.

Every sample's augmentation is seeded from ``(seed, epoch, position in the epoch)``
by :class:`EpochSampler`, not from a worker's generator: the same run gives the same
batches with any number of DataLoader workers, and a resumed epoch skips the batches
already trained without decoding them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from segkit._pillow import DECODE_ERRORS, decode_error_text, pixel_limit_lifted
from segkit.dataset import Dataset
from segkit.errors import DatasetError
from segkit.inference import image_to_tensor
from segkit.train.augment import AugmentSettings, PairedAugment
from segkit.voc import IGNORE_INDEX, read_class_mask, read_mask
from segkit.weights_stage import read_weight_map, weight_map_path

#: A class rarer than this share of the labelled training pixels gets a warning.
RARE_CLASS_SHARE = 0.001
_MAX_LISTED = 20


@dataclass(frozen=True)
class SplitFiles:
    """The files of one sample: image, class mask and (when used) weight map."""

    id: str
    image: Path
    mask: Path
    weight_map: Path | None = None
    object_mask: Path | None = None  # instance mask, read for validation's object scores


def split_files(
    dataset: Dataset, split: str, *, weight_maps: bool = False, instances: bool = False
) -> list[SplitFiles]:
    """The samples listed in ``split``; one ``DatasetError`` lists every missing file.

    ``instances`` adds each sample's instance mask (``SegmentationObject/``) where it has one.
    """
    ids = dataset.read_split(split)
    if not ids:
        raise DatasetError(f"{dataset.split_file(split)}: the {split} split is empty")
    by_id = {sample.id: sample for sample in dataset.samples}
    found, problems = [], []
    for sample_id in ids:
        sample = by_id.get(sample_id)
        if sample is None or sample.image is None or sample.class_mask is None:
            problems.append(f"{sample_id}: image or class mask missing")
            continue
        weight = weight_map_path(dataset.root, sample_id) if weight_maps else None
        if weight is not None and not weight.is_file():
            problems.append(f"{weight}: weight map missing")
            continue
        objects = sample.object_mask if instances else None
        found.append(SplitFiles(sample_id, sample.image, sample.class_mask, weight, objects))
    if problems:
        hint = "; run `segkit weights --border` first" if weight_maps else ""
        raise DatasetError(
            f"{dataset.split_file(split)}: {len(problems)} sample(s) unusable{hint}: "
            + "; ".join(problems[:_MAX_LISTED])
        )
    return found


def read_image(path: Path) -> NDArray[np.uint8] | NDArray[np.uint16]:
    """An image as ``(H, W, C)`` in its stored dtype: C = 1 (gray, 8/16-bit) or 3 (colour)."""
    try:
        with pixel_limit_lifted(), PIL.Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                array = np.asarray(image)
                if array.dtype != np.uint16:
                    if array.size and (array.min() < 0 or array.max() > 65535):
                        raise DatasetError(f"{path}: 32-bit image values outside 0..65535")
                    array = array.astype(np.uint16)
                return array[:, :, None]
            if image.mode in ("1", "L", "LA"):
                return np.asarray(image.convert("L"))[:, :, None]
            return np.asarray(image.convert("RGB"))
    except DECODE_ERRORS as error:
        raise DatasetError(f"{path}: cannot read image ({decode_error_text(error)})") from error


@dataclass
class Decoded:
    """One decoded sample in its stored dtypes."""

    image: NDArray[Any]
    mask: NDArray[np.uint8]
    weight: NDArray[np.float32] | None = None
    instances: NDArray[np.integer] | None = None


def decode(files: SplitFiles) -> Decoded:
    """Read image, mask, weight map and instance mask; their sizes must agree."""
    image = read_image(files.image)
    mask = read_class_mask(files.mask)
    if image.shape[:2] != mask.shape:
        raise DatasetError(
            f"{files.mask}: mask is {mask.shape[1]}×{mask.shape[0]} but the image is "
            f"{image.shape[1]}×{image.shape[0]}"
        )
    weight = None
    if files.weight_map is not None:
        weight = read_weight_map(files.weight_map)
        if weight.shape != mask.shape:
            raise DatasetError(f"{files.weight_map}: weight map shape differs from the mask")
    instances = None
    if files.object_mask is not None:
        instances = read_mask(files.object_mask, "instance")
        if instances.shape != mask.shape:
            raise DatasetError(f"{files.object_mask}: instance mask shape differs from the mask")
    return Decoded(image, mask, weight, instances)


def invalid_mask_values(mask: NDArray[np.integer], num_classes: int) -> list[int]:
    """Ids in ``mask`` that are neither a class (0..K-1) nor the ignore id 255.

    >>> invalid_mask_values(np.array([[0, 1, 7, 255]], np.uint8), 3)
    [7]
    """
    values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    return [int(v) for v in values if v >= num_classes and v != IGNORE_INDEX]


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean/std of the training images, on values scaled to [0, 1] by ``max_value``."""

    max_value: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """The ``normalization`` a checkpoint stores: ``(pixel / max_value - mean) / std``."""
        return {"max_value": self.max_value, "mean": list(self.mean), "std": list(self.std)}


@dataclass
class Scan:
    """What one pass over the decoded samples learnt (see :func:`scan_samples`)."""

    channels: int
    max_value: float
    histogram: NDArray[np.int64]
    normalization: Normalization
    min_side: int
    cache: dict[str, Decoded] | None
    cached_bytes: int
    problems: list[str] = field(default_factory=list)
    val_pixels: int = 0  # pixels of the validation images (what one validation predicts)


def available_memory() -> int:
    """Bytes of memory available now (physical memory when unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 32


def scan_samples(
    train: Sequence[SplitFiles],
    val: Sequence[SplitFiles],
    num_classes: int,
    *,
    cache: bool = True,
    cache_budget: int | None = None,
) -> Scan:
    """Decode every sample once: mask check, class histogram, normalisation, cache.

    Raises one ``DatasetError`` listing every mask with values outside 0..K-1 and 255
    and every image whose channel count or bit depth differs from the first one.
    The decoded samples are kept when they fit ``cache_budget`` bytes (default: a
    quarter of the available memory).
    """
    budget = available_memory() // 4 if cache_budget is None else cache_budget
    kept: dict[str, Decoded] | None = {} if cache else None
    used = 0
    histogram = np.zeros(256, np.int64)
    sums = sumsq = None
    pixels = 0
    channels = dtype = None
    min_side = None
    problems: list[str] = []
    odd_layout: list[str] = []
    first_image = None
    val_pixels = 0
    for index, files in enumerate([*train, *val]):
        sample = decode(files)
        if channels is None:
            channels, dtype, first_image = sample.image.shape[2], sample.image.dtype, files.image
        elif (sample.image.shape[2], sample.image.dtype) != (channels, dtype):
            odd_layout.append(
                f"{files.image} ({sample.image.shape[2]} channel(s) of {sample.image.dtype})"
            )
        bad = invalid_mask_values(sample.mask, num_classes)
        if bad:
            problems.append(f"{files.mask}: values {bad}")
        if index < len(train):
            histogram += np.bincount(sample.mask.ravel(), minlength=256)
            flat = sample.image.reshape(-1, sample.image.shape[2]).astype(np.float64)
            sums = flat.sum(0) if sums is None else sums + flat.sum(0)
            sumsq = (flat**2).sum(0) if sumsq is None else sumsq + (flat**2).sum(0)
            pixels += flat.shape[0]
            side = min(sample.mask.shape)
            min_side = side if min_side is None else min(min_side, side)
        else:
            val_pixels += sample.mask.size
        if kept is not None:
            size = sample.image.nbytes + sample.mask.nbytes
            size += 0 if sample.weight is None else sample.weight.nbytes
            size += 0 if sample.instances is None else sample.instances.nbytes
            if used + size <= budget:
                kept[files.id] = sample
                used += size
            else:
                kept = None
    messages = []
    if problems:
        messages.append(
            f"{len(problems)} mask(s) cannot be trained on (classes are 0..{num_classes - 1}, "
            f"255 = ignore): " + _listed(problems)
        )
    if odd_layout:
        messages.append(
            f"{len(odd_layout)} image(s) differ from the first one's channel layout "
            f"({first_image}: {channels} channel(s) of {dtype}): {_listed(odd_layout)}; one "
            "dataset must have one layout: convert the odd images (e.g. to 8-bit RGB) or "
            "leave them out of the split files"
        )
    if messages:
        raise DatasetError("\n".join(messages))
    assert channels is not None and sums is not None and sumsq is not None and min_side
    max_value = 65535.0 if dtype == np.uint16 else 255.0
    mean = sums / pixels
    std = np.sqrt(np.maximum(sumsq / pixels - mean**2, 0.0))
    norm = Normalization(
        max_value,
        tuple(float(m / max_value) for m in mean),
        tuple(float(max(s / max_value, 1e-6)) for s in std),
    )
    return Scan(
        channels, max_value, histogram, norm, min_side, kept, used if kept else 0,
        val_pixels=val_pixels,
    )  # fmt: skip


def _listed(items: Sequence[str]) -> str:
    return "; ".join(items[:_MAX_LISTED]) + ("; …" if len(items) > _MAX_LISTED else "")


def class_shares(histogram: NDArray[np.int64], num_classes: int) -> list[float]:
    """Each class's share of the labelled (non-ignore) pixels."""
    counts = histogram[:num_classes].astype(np.float64)
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]


def normalize(image: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Apply the run's per-channel normalisation to ``[..., C, H, W]`` values in [0, 1]."""
    shape = (-1, 1, 1)
    mean = torch.tensor(norm.mean, dtype=image.dtype, device=image.device).view(shape)
    std = torch.tensor(norm.std, dtype=image.dtype, device=image.device).view(shape)
    return (image - mean) / std


class _Samples(TorchDataset):
    """Decoded samples by index, from the cache or from disk."""

    def __init__(self, files: Sequence[SplitFiles], scan: Scan) -> None:
        self.files = list(files)
        self.scan = scan

    def __len__(self) -> int:
        return len(self.files)

    def decoded(self, index: int) -> Decoded:
        files = self.files[index]
        if self.scan.cache is not None and files.id in self.scan.cache:
            return self.scan.cache[files.id]
        return decode(files)


class TrainSet(_Samples):
    """Items are ``(index, seed)`` pairs from :class:`EpochSampler`; returns augmented tensors.

    Each item is ``(image [C, S, S] float32 normalised, mask [O, O] int64, weight)``,
    ``weight`` an ``[O, O]`` float32 map or an empty tensor without weight maps. ``S``
    is the augmentation's crop; ``O`` (``output_crop``, default ``S``) is smaller for a
    valid-padding network: the sample is mirrored by ``(S - O) / 2`` pixels on every
    side before augmentation and mask and weight map are cut to the tile's centre, the
    pixels the network's output covers (the U-Net paper's overlap-tile).
    """

    def __init__(
        self,
        files: Sequence[SplitFiles],
        scan: Scan,
        settings: AugmentSettings,
        *,
        output_crop: int | None = None,
    ) -> None:
        super().__init__(files, scan)
        self.augment = PairedAugment(settings)
        output_crop = settings.crop if output_crop is None else output_crop
        if not 0 < output_crop <= settings.crop or (settings.crop - output_crop) % 2:
            raise ValueError(f"output crop {output_crop} must be centred in {settings.crop}")
        self.margin = (settings.crop - output_crop) // 2
        self.output_crop = output_crop

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        index, seed = item
        sample = self.decoded(index)
        pixels, labels, weights = sample.image, sample.mask, sample.weight
        if self.margin:
            m = self.margin
            pixels = np.pad(pixels, ((m, m), (m, m), (0, 0)), mode="reflect")
            labels = np.pad(labels, m, mode="reflect")
            weights = None if weights is None else np.pad(weights, m, mode="reflect")
        image = image_to_tensor(pixels)[None]
        mask = torch.from_numpy(labels.astype(np.int64))[None]
        weight = None if weights is None else torch.from_numpy(weights)[None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image, mask, weight = self.augment(image, mask, weight)
        centre = slice(self.margin, self.margin + self.output_crop)
        empty = torch.empty(0)
        return (
            normalize(image[0], self.scan.normalization),
            mask[0, centre, centre],
            empty if weight is None else weight[0, centre, centre],
        )


class EvalSet(_Samples):
    """Whole images for validation: ``(image [C, H, W] normalised, mask [H, W] int64)``.

    With ``instances`` a third item is the instance mask ``[H, W]`` int64 (0 = none; the
    stored ignore id, 255 or 65535, becomes 0 too), or an empty tensor for a sample
    without one.
    """

    def __init__(self, files: Sequence[SplitFiles], scan: Scan, *, instances: bool = False) -> None:
        super().__init__(files, scan)
        self.instances = instances

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        sample = self.decoded(index)
        image = image_to_tensor(sample.image, self.scan.normalization.to_dict())
        mask = torch.from_numpy(sample.mask.astype(np.int64))
        if not self.instances:
            return image, mask
        if sample.instances is None:
            return image, mask, torch.empty(0, dtype=torch.int64)
        stored = sample.instances
        ignore = np.iinfo(stored.dtype).max
        return image, mask, torch.from_numpy(np.where(stored == ignore, 0, stored).astype(np.int64))


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled ``(index, seed)`` pairs of one epoch, this rank's share, from ``skip`` on.

    The order and seeds depend only on ``(seed, epoch)``; with ``world`` ranks each
    takes every ``world``-th item of the same permutation (the tail that does not
    divide evenly is dropped, as DistributedSampler with ``drop_last`` does).
    """

    def __init__(
        self, size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1, skip: int = 0
    ) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch
        self.rank, self.world, self.skip = rank, world, skip

    def _items(self) -> list[tuple[int, int]]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        usable = (self.size // self.world) * self.world
        pairs = list(zip(order[:usable], seeds[:usable], strict=True))
        return pairs[self.rank :: self.world][self.skip :]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._items())

    def __len__(self) -> int:
        return max(self.size // self.world - self.skip, 0)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one intra-op thread per worker (workers already run in
    parallel), numpy seeded from torch's per-worker seed for any numpy use downstream."""
    torch.set_num_threads(1)
    np.random.seed(torch.initial_seed() % 2**32)
