"""``train_one_epoch`` and ``evaluate``: no files, no printing; progress goes out as events.

Loss and metrics are accumulated over the whole epoch or validation set (a dataset-level
confusion matrix from :mod:`segkit.metrics`), never averaged per batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from segkit.devices import Runtime
from segkit.errors import TrainingDiverged
from segkit.inference import InferenceOptions, predict_probabilities, probabilities_to_mask
from segkit.metrics import ConfusionMatrix, ObjectCounts
from segkit.voc import IGNORE_INDEX


def lr_factor(progress: float, *, schedule: str, warmup: float) -> float:
    """Multiplier of the base learning rate at ``progress`` ∈ [0, 1] of the run.

    Linear warm-up over the first ``warmup`` fraction, then cosine or poly (power 0.9)
    decay to 0 at the end, or constant. Progress is steps done / steps planned, or
    seconds spent / seconds budgeted under ``--time``.

    >>> [round(lr_factor(p, schedule="cosine", warmup=0.1), 3) for p in (0.05, 0.1, 0.55, 1.0)]
    [0.5, 1.0, 0.5, 0.0]
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 0.01)
    rest = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    if schedule == "poly":
        return (1.0 - rest) ** 0.9
    return 1.0


@dataclass
class EpochStats:
    """Sums over the batches of an epoch so far (kept in the resume state mid-epoch)."""

    loss_sum: float = 0.0
    images: int = 0
    batches: int = 0
    data_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def loss(self) -> float:
        """Mean loss per image."""
        return self.loss_sum / self.images if self.images else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the resume state."""
        return asdict(self)


@dataclass(frozen=True)
class StepInfo:
    """What ``on_step`` receives after each batch."""

    batch: int
    batches: int
    global_step: int
    loss: float
    lr: float
    stats: EpochStats


def _timed(batches: Iterable[Any]) -> Iterator[tuple[float, Any]]:
    """Yield ``(seconds spent waiting for the batch, batch)``."""
    iterator = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield time.perf_counter() - start, batch


def _outputs(model: nn.Module, images: Tensor, runtime: Runtime) -> Tensor | list[Tensor]:
    with runtime.autocast():
        return model(runtime.prepare_input(images))


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor, Tensor]],
    *,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    runtime: Runtime,
    scaler: torch.amp.GradScaler | None,
    num_batches: int,
    first_batch: int = 0,
    global_step: int = 0,
    accumulate: int = 1,
    clip_grad: float = 0.0,
    set_lr: Callable[[int], float],
    stats: EpochStats | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> tuple[EpochStats, int]:
    """Train over ``batches`` (the epoch's batches from ``first_batch`` on).

    ``set_lr(global_step)`` sets and returns the learning rate before each optimizer
    step; ``on_step`` runs after each batch (saving happens there, at optimizer-step
    boundaries); ``should_stop(global_step)`` ends the epoch early (time budget).
    Returns the epoch's stats and the new global step. A NaN/inf loss raises
    ``TrainingDiverged`` naming the step before any weight is touched.
    """
    stats = stats if stats is not None else EpochStats()
    model.train()
    lr = set_lr(global_step)
    batch_index = first_batch
    for wait, (images, masks, weights) in _timed(batches):
        start = time.perf_counter()
        target = masks.to(runtime.device, non_blocking=True)
        weight_map = weights.to(runtime.device, non_blocking=True) if weights.numel() else None
        last_of_group = (batch_index + 1) % accumulate == 0 or batch_index + 1 == num_batches
        sync = (
            contextlib.nullcontext()
            if last_of_group or not hasattr(model, "no_sync")
            else model.no_sync()
        )
        with sync:
            outputs = _outputs(model, images, runtime)
            loss = loss_fn(outputs, target, weight_map=weight_map)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"loss is {value} at step {global_step + 1} (batch {batch_index + 1}); "
                    "stopped, the last saved checkpoint is kept. Lower --lr or use --precision fp32"
                )
            scaled = loss / accumulate
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if last_of_group:
            if scaler is not None:
                scaler.unscale_(optimizer)
            if clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            lr = set_lr(global_step)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        stats.loss_sum += value * images.shape[0]
        stats.images += images.shape[0]
        stats.batches += 1
        stats.data_seconds += wait
        stats.compute_seconds += time.perf_counter() - start
        batch_index += 1
        if on_step is not None:
            on_step(StepInfo(batch_index, num_batches, global_step, value, lr, stats))
        if last_of_group and should_stop is not None and should_stop(global_step):
            break
    return stats, global_step


#: Validation images up to this many pixels run whole; larger ones in tiles.
WHOLE_IMAGE_PIXELS = 1024 * 1024
VAL_TILE = 512


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, ...]],
    *,
    num_classes: int,
    runtime: Runtime,
    objects: ObjectCounts | None = None,
) -> tuple[ConfusionMatrix, float, int]:
    """Confusion matrix over every pixel of the full images in ``batches``, the summed
    per-image cross-entropy of the predicted probabilities, and the number of images.

    Batches are ``(images, masks)`` or ``(images, masks, instances)``; with ``objects``
    given, each image with an instance mask (a non-empty one) is also counted there:
    ground-truth instances against the connected components of the prediction.

    Images run whole, or in blended tiles when larger than ``WHOLE_IMAGE_PIXELS``
    (:mod:`segkit.inference`). The loss is the pixel cross-entropy whatever the training
    loss, so runs with different losses compare. Pass the bare model (not the DDP
    wrapper): ranks see different numbers of images; the matrix is this process's
    share, to be ``all_reduce()``d under DDP.
    """
    matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    loss_sum, images = 0.0, 0
    for batch, masks, *more in batches:
        instances = more[0] if more else [None] * len(batch)
        for image, mask, instance in zip(batch, masks, instances, strict=True):
            pixels = image.shape[-1] * image.shape[-2]
            options = InferenceOptions(tile=None if pixels <= WHOLE_IMAGE_PIXELS else VAL_TILE)
            with runtime.autocast():
                probs = predict_probabilities(model, runtime.prepare_input(image[None])[0], options)
            target = mask.to(probs.device)
            valid = target < num_classes
            picked = probs.gather(0, torch.where(valid, target, 0)[None])[0]
            nll = -picked.clamp_min(1e-12).log()[valid]
            loss_sum += float(nll.mean()) if nll.numel() else 0.0
            images += 1
            prediction = probabilities_to_mask(probs)
            matrix.update(target, prediction.to(torch.int64))
            if objects is not None and instance is not None and instance.numel():
                objects.update(mask.numpy(), instance.numpy(), prediction.cpu().numpy())
    return matrix, loss_sum, images
