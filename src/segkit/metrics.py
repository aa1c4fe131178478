"""Segmentation metrics: one confusion matrix, the scores derived from it, object matching.

Conventions (docs/metrics.md gives every formula with a worked example):

- The confusion matrix is accumulated over the whole dataset (never a mean of per-batch
  or per-image scores): int64, rows are ground truth, columns are prediction.
- Pixels whose ground truth is ``ignore_index`` are not scored (their prediction is not
  checked either). A ground-truth id outside ``0..K-1`` that is not ``ignore_index``, or
  a prediction outside ``0..K-1`` at a scored pixel, raises ``ValueError``.
- A per-class score whose denominator is 0 is NaN (a class absent from both ground
  truth and prediction has no IoU) and is left out of every mean; each mean says how
  many classes it used.

Object-level scores match connected components (or given instances) one-to-one with
ground-truth instances of the same class: see :class:`ObjectCounts`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from segkit.errors import MetricsError

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = 255
#: IoU thresholds of the 2018 Data Science Bowl metric: 0.50, 0.55, ..., 0.95.
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Pixels counted per ``np.bincount`` call: big enough to amortise the call, small
#: enough that the int64 codes stay in cache.
_CHUNK = 1 << 17
_INT64_MAX = np.iinfo(np.int64).max


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise MetricsError(f"num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def _check_ignore_index(ignore_index: object, num_classes: int) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise MetricsError(f"ignore_index must be an integer or None, got {ignore_index!r}")
    if 0 <= ignore_index < num_classes:
        raise MetricsError(f"ignore_index {ignore_index} is a class id (0..{num_classes - 1})")
    return ignore_index


def _is_torch(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "device")


def _check_integer_dtype(kind: str, name: str) -> None:
    if kind not in "iub":
        raise MetricsError(
            f"{name} must hold integer class ids, got dtype kind {kind!r}; "
            "take the argmax of the logits first"
        )


def _pair_codes(target: NDArray[np.uint8], prediction: NDArray[np.uint8]) -> NDArray[np.intp]:
    # Built as intp, the type bincount counts in, so it copies nothing.
    codes = prediction.astype(np.intp)
    codes <<= 8
    codes |= target
    return codes


def _count_pixels(target: NDArray[np.uint8], prediction: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Histogram of the pair codes, one count per pixel."""
    return np.bincount(_pair_codes(target, prediction))


#: Pixels sampled to decide whether a chunk is made of runs of equal pixel pairs.
_RUN_SAMPLE = 4096


def _mostly_runs(target: NDArray[np.uint8], prediction: NDArray[np.uint8]) -> bool:
    """Whether fewer than a quarter of the sampled neighbours differ (masks, not noise)."""
    t, p = target[:_RUN_SAMPLE], prediction[:_RUN_SAMPLE]
    changes = np.count_nonzero((t[1:] != t[:-1]) | (p[1:] != p[:-1]))
    return changes * 4 < t.size


def _count_runs(target: NDArray[np.uint8], prediction: NDArray[np.uint8]) -> NDArray[np.int64]:
    """The same histogram, counting each run of equal (target, prediction) pairs once.

    Class masks are piecewise constant: along a row the pair rarely changes, so this
    does bincount's scalar work once per run instead of once per pixel (and spares it
    the chain of increments to one bin that slows it on long runs).
    """
    starts = np.empty(target.size, bool)
    starts[0] = True
    np.not_equal(target[1:], target[:-1], out=starts[1:])
    starts[1:] |= prediction[1:] != prediction[:-1]
    first = np.flatnonzero(starts)
    lengths = np.diff(first, append=target.size)
    weighted = np.bincount(_pair_codes(target[first], prediction[first]), weights=lengths)
    # Float sums of integer lengths below 2**53 are exact.
    return weighted.astype(np.int64)


class ConfusionMatrix:
    """A dataset-level confusion matrix, fed batch by batch.

    ``update`` takes numpy arrays or torch tensors of class ids of any (equal) shape.
    CPU tensors are counted through numpy; tensors on an accelerator are counted on
    their device with no host round trip per batch, so their invalid-id check happens
    when the matrix is read (``matrix``, ``to_dict``, ``scores``, ``+``, ``all_reduce``).

    >>> cm = ConfusionMatrix(3)
    >>> cm.update(np.array([0, 1, 2, 255]), np.array([0, 2, 2, 1]))
    >>> cm.matrix.tolist()
    [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    >>> cm.ignored_pixels
    1
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = _check_ignore_index(ignore_index, self.num_classes)
        self._counts = np.zeros((self.num_classes, self.num_classes), np.int64)
        self._ignored = 0
        # Bins on an accelerator: rows = class ids, ignore, invalid target; columns =
        # class ids, invalid prediction. Created by the first device update.
        self._device_bins: torch.Tensor | None = None

    # -- accumulation -----------------------------------------------------------------
    def update(self, target: Any, prediction: Any) -> None:
        """Count one batch: ``target`` and ``prediction`` hold class ids, same shape."""
        if tuple(target.shape) != tuple(prediction.shape):
            raise MetricsError(
                f"target shape {tuple(target.shape)} != prediction shape {tuple(prediction.shape)}"
            )
        if _is_torch(target) or _is_torch(prediction):
            self._update_torch(target, prediction)
        else:
            self._update_numpy(np.asarray(target), np.asarray(prediction))

    def _update_numpy(self, target: NDArray[Any], prediction: NDArray[Any]) -> None:
        _check_integer_dtype(target.dtype.kind, "target")
        _check_integer_dtype(prediction.dtype.kind, "prediction")
        if target.dtype == np.uint8 and prediction.dtype == np.uint8 and self.num_classes <= 256:
            counts, ignored = self._count_uint8(target.reshape(-1), prediction.reshape(-1))
        else:
            counts, ignored = self._count_general(target.reshape(-1), prediction.reshape(-1))
        self._counts += counts
        self._ignored += ignored

    def _count_uint8(
        self, target: NDArray[np.uint8], prediction: NDArray[np.uint8]
    ) -> tuple[NDArray[np.int64], int]:
        # Masks read from PNG: counting the code prediction * 256 + target gives every
        # (prediction, target) pair of byte values, so ignored and invalid ids fall out
        # of the table without masking passes. Prediction-major keeps the table short:
        # bincount sizes it by the largest code.
        flat = np.zeros(256 * 256, np.int64)
        used = 0
        for start in range(0, target.size, _CHUNK):
            t = target[start : start + _CHUNK]
            p = prediction[start : start + _CHUNK]
            hist = _count_runs(t, p) if _mostly_runs(t, p) else _count_pixels(t, p)
            flat[: hist.size] += hist
            used = max(used, hist.size)
        k = self.num_classes
        rows = max(k, -(-used // 256))
        by_prediction = flat[: rows * 256].reshape(rows, 256)  # [prediction, target]
        target_counts = by_prediction.sum(axis=0)
        ignore = self.ignore_index
        ignored = int(target_counts[ignore]) if ignore is not None and 0 <= ignore < 256 else 0
        bad_target = int(target_counts[k:].sum()) - (ignored if ignore and ignore >= k else 0)
        bad_prediction = int(by_prediction[k:, :k].sum())
        if bad_target or bad_prediction:
            table = np.zeros((256, 256), np.int64)
            table[:, :rows] = by_prediction.T
            self._raise_invalid(bad_target, bad_prediction, table, k)
        return by_prediction[:k, :k].T.copy(), ignored

    def _count_general(
        self, target: NDArray[Any], prediction: NDArray[Any]
    ) -> tuple[NDArray[np.int64], int]:
        k = self.num_classes
        target = target.astype(np.int64, copy=False)
        prediction = prediction.astype(np.int64, copy=False)
        counts = np.zeros(k * k, np.int64)
        ignored = 0
        for start in range(0, target.size, _CHUNK):
            t = target[start : start + _CHUNK]
            p = prediction[start : start + _CHUNK]
            scored = (t >= 0) & (t < k)
            if self.ignore_index is not None:
                ignored_here = t == self.ignore_index
                ignored += int(ignored_here.sum())
                bad_target = int(t.size - scored.sum() - ignored_here.sum())
            else:
                bad_target = int(t.size - scored.sum())
            t, p = t[scored], p[scored]
            bad_prediction = int(((p < 0) | (p >= k)).sum())
            self._raise_invalid(bad_target, bad_prediction, None, k)
            counts += np.bincount(t * k + p, minlength=k * k)
        return counts.reshape(k, k), ignored

    def _update_torch(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        import torch

        target = torch.as_tensor(target).detach()
        prediction = torch.as_tensor(prediction).detach()
        for name, tensor in (("target", target), ("prediction", prediction)):
            if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
                _check_integer_dtype("f", name)
        device = target.device if target.device.type != "cpu" else prediction.device
        if device.type == "cpu":
            self._update_numpy(target.numpy(), prediction.numpy())
        else:
            self._update_device(target, prediction, device)

    def _update_device(
        self, target: torch.Tensor, prediction: torch.Tensor, device: torch.device | str
    ) -> None:
        """Count on ``device`` into fixed bins (CPU tensors only in tests of this path)."""
        import torch

        k = self.num_classes
        t = target.to(device).reshape(-1).long()
        p = prediction.to(device).reshape(-1).long()
        # Fixed-size bins and where() instead of boolean indexing: nothing here needs
        # to know a value on the host, so the accelerator never waits for the CPU.
        row = torch.where((t >= 0) & (t < k), t, k + 1)
        if self.ignore_index is not None:
            row = torch.where(t == self.ignore_index, k, row)
        column = torch.where((p >= 0) & (p < k), p, k)
        column = torch.where(row >= k, 0, column)
        codes = row * (k + 1) + column
        device = torch.device(device)
        if self._device_bins is None or self._device_bins.device != device:
            self._fold_device_bins()
            self._device_bins = torch.zeros((k + 2) * (k + 1), dtype=torch.int64, device=device)
        ones = torch.ones(1, dtype=torch.int64, device=device).expand(codes.numel())
        self._device_bins.index_add_(0, codes, ones)

    def _fold_device_bins(self) -> None:
        """Move counts from the accelerator into the host matrix (one sync)."""
        if self._device_bins is None:
            return
        k = self.num_classes
        bins = self._device_bins.cpu().numpy().reshape(k + 2, k + 1)
        # Raises on every read until reset(): the bad batch cannot be taken back out.
        self._raise_invalid(int(bins[k + 1].sum()), int(bins[:k, k].sum()), None, k)
        self._device_bins = None
        self._counts += bins[:k, :k]
        self._ignored += int(bins[k].sum())

    def _raise_invalid(
        self, bad_target: int, bad_prediction: int, table: NDArray[np.int64] | None, k: int
    ) -> None:
        if bad_target:
            found = ""
            if table is not None:
                ids = [i for i in range(k, 256) if i != self.ignore_index and table[i].any()]
                found = f" (found {', '.join(map(str, ids[:5]))})"
            ignore = "" if self.ignore_index is None else f" or {self.ignore_index} (ignore)"
            raise MetricsError(
                f"{bad_target} target pixel(s) hold ids outside 0..{k - 1}{ignore}{found}"
            )
        if bad_prediction:
            found = ""
            if table is not None:
                ids = [i for i in range(k, 256) if table[:k, i].any()]
                found = f" (found {', '.join(map(str, ids[:5]))})"
            raise MetricsError(
                f"{bad_prediction} predicted pixel(s) hold ids outside 0..{k - 1}{found}"
            )

    # -- state ------------------------------------------------------------------------
    @property
    def matrix(self) -> NDArray[np.int64]:
        """The counts as a new int64 numpy array: rows ground truth, columns prediction."""
        self._fold_device_bins()
        return self._counts.copy()

    @property
    def ignored_pixels(self) -> int:
        """How many pixels had the ignore id in the ground truth (not scored)."""
        self._fold_device_bins()
        return self._ignored

    def reset(self) -> None:
        """Forget every count (device counts included)."""
        self._counts[:] = 0
        self._ignored = 0
        self._device_bins = None

    def _check_compatible(self, other: object) -> ConfusionMatrix:
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"cannot combine a ConfusionMatrix with {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise MetricsError(
                f"cannot combine matrices of {self.num_classes} and {other.num_classes} "
                f"classes (ignore {self.ignore_index} and {other.ignore_index})"
            )
        return other

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        other = self._check_compatible(other)
        total = ConfusionMatrix(self.num_classes, self.ignore_index)
        total._counts = self.matrix + other.matrix
        total._ignored = self.ignored_pixels + other.ignored_pixels
        return total

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return (
            (self.num_classes, self.ignore_index, self.ignored_pixels)
            == (other.num_classes, other.ignore_index, other.ignored_pixels)
        ) and bool(np.array_equal(self.matrix, other.matrix))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self.matrix.sum())})"
        )

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the counts of every ``torch.distributed`` rank into each rank; returns self.

        A no-op unless a process group is initialised. One all-reduce of the int64 state
        (matrix and ignored count): on the CUDA device for NCCL (the one the counts live
        on, else the current one), on the CPU for other backends.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = None
        if dist.get_backend() == "nccl":
            on_device = self._device_bins is not None and self._device_bins.is_cuda
            device = self._device_bins.device if on_device else torch.device("cuda")
        self._fold_device_bins()
        state = np.append(self._counts.reshape(-1), self._ignored)
        tensor = torch.from_numpy(state).to(device or "cpu")
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        reduced = tensor.cpu().numpy()
        k = self.num_classes
        self._counts = reduced[: k * k].reshape(k, k).astype(np.int64)
        self._ignored = int(reduced[-1])
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "ignored_pixels": self.ignored_pixels,
            "matrix": self.matrix.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfusionMatrix:
        """Rebuild a matrix from :meth:`to_dict`; ``ValueError`` on a malformed dict."""
        if not isinstance(data, Mapping):
            raise MetricsError("confusion matrix must be a JSON object")
        k = _check_num_classes(data.get("num_classes"))
        rows = data.get("matrix")
        # Checked before the matrix is allocated: a saved num_classes of 10**9 must not
        # reserve 8 EB; the rows it comes with bound it.
        if (
            not isinstance(rows, list)
            or len(rows) != k
            or not all(isinstance(row, list) and len(row) == k for row in rows)
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT64_MAX
                for row in rows
                for v in row
            )
        ):
            raise MetricsError(f"'matrix' must be {k} rows of {k} non-negative integers")
        ignored = data.get("ignored_pixels", 0)
        if isinstance(ignored, bool) or not isinstance(ignored, int) or ignored < 0:
            raise MetricsError("'ignored_pixels' must be a non-negative integer")
        cm = cls(k, data.get("ignore_index", IGNORE_INDEX))
        cm._counts = np.array(rows, dtype=np.int64).reshape(k, k)
        cm._ignored = ignored
        return cm

    def scores(
        self, *, classes: Iterable[int] | None = None, exclude_background: bool = False
    ) -> PixelScores:
        """The pixel scores of the accumulated matrix (see :func:`pixel_scores`)."""
        return pixel_scores(self.matrix, classes=classes, exclude_background=exclude_background)


# -- pixel scores ----------------------------------------------------------------------


def _ratio(numerator: NDArray[Any], denominator: NDArray[Any]) -> NDArray[np.float64]:
    """Element-wise ``numerator / denominator``, NaN where the denominator is 0."""
    numerator = numerator.astype(np.float64)
    denominator = denominator.astype(np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _mean(values: NDArray[np.float64], selected: NDArray[np.bool_]) -> tuple[float, int]:
    chosen = values[selected]
    chosen = chosen[~np.isnan(chosen)]
    return (float(chosen.mean()) if chosen.size else math.nan), int(chosen.size)


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class PixelScores:
    """Per-class and mean scores of one confusion matrix.

    Per-class tuples have one entry per class id (NaN where undefined). The means use
    the classes in ``classes`` whose score is defined; ``*_classes`` say how many.
    """

    classes: tuple[int, ...]
    iou: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    dice: tuple[float, ...]
    gt_pixels: tuple[int, ...]
    pred_pixels: tuple[int, ...]
    aacc: float
    macc: float
    macc_classes: int
    miou: float
    miou_classes: int
    mdice: float
    mdice_classes: int
    fwiou: float
    pixels: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: NaN becomes ``null``."""
        per_class = [
            {
                "id": c,
                "iou": _json_float(self.iou[c]),
                "precision": _json_float(self.precision[c]),
                "recall": _json_float(self.recall[c]),
                "dice": _json_float(self.dice[c]),
                "gt_pixels": self.gt_pixels[c],
                "pred_pixels": self.pred_pixels[c],
            }
            for c in range(len(self.iou))
        ]
        return {
            "classes_in_means": list(self.classes),
            "aAcc": _json_float(self.aacc),
            "mAcc": _json_float(self.macc),
            "mAcc_classes": self.macc_classes,
            "mIoU": _json_float(self.miou),
            "mIoU_classes": self.miou_classes,
            "mDice": _json_float(self.mdice),
            "mDice_classes": self.mdice_classes,
            "FWIoU": _json_float(self.fwiou),
            "pixels": self.pixels,
            "per_class": per_class,
        }


def pixel_scores(
    matrix: NDArray[np.integer],
    *,
    classes: Iterable[int] | None = None,
    exclude_background: bool = False,
) -> PixelScores:
    """Scores of a confusion matrix (rows ground truth, columns prediction).

    ``classes`` restricts the means (mAcc, mIoU, mDice, FWIoU) to a subset of class ids;
    ``exclude_background`` drops class 0 from them. aAcc always covers every scored
    pixel. A class whose denominator is 0 has a NaN score and is left out of the means.

    >>> s = pixel_scores(np.array([[3, 1], [0, 0]]))
    >>> s.iou, s.miou, s.miou_classes
    ((0.75, 0.0), 0.375, 2)
    >>> pixel_scores(np.array([[4, 0], [0, 0]])).iou[1]
    nan
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise MetricsError(f"confusion matrix must be square, got shape {matrix.shape}")
    if matrix.dtype.kind not in "iuf" or not (np.isfinite(matrix) & (matrix >= 0)).all():
        raise MetricsError("confusion matrix must hold non-negative, finite counts")
    k = matrix.shape[0]
    selected = np.zeros(k, bool)
    if classes is None:
        selected[:] = True
    else:
        chosen = [int(c) for c in classes]
        bad = [c for c in chosen if not 0 <= c < k]
        if bad:
            raise MetricsError(f"class ids {bad} are outside 0..{k - 1}")
        selected[chosen] = True
    if exclude_background:
        selected[0] = False
    matrix = matrix.astype(np.int64)
    tp = np.diag(matrix)
    gt = matrix.sum(axis=1)
    pred = matrix.sum(axis=0)
    union = gt + pred - tp
    iou = _ratio(tp, union)
    precision = _ratio(tp, pred)
    recall = _ratio(tp, gt)
    dice = _ratio(2 * tp, gt + pred)
    total = int(gt.sum())
    macc, macc_n = _mean(recall, selected)
    miou, miou_n = _mean(iou, selected)
    mdice, mdice_n = _mean(dice, selected)
    weights = gt[selected].astype(np.float64)
    # FWIoU weights IoU by ground-truth frequency; a class without ground truth weighs 0.
    fw_iou = np.nan_to_num(iou[selected])
    fwiou = float((weights * fw_iou).sum() / weights.sum()) if weights.sum() else math.nan
    return PixelScores(
        classes=tuple(int(c) for c in np.flatnonzero(selected)),
        iou=tuple(float(v) for v in iou),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        dice=tuple(float(v) for v in dice),
        gt_pixels=tuple(int(v) for v in gt),
        pred_pixels=tuple(int(v) for v in pred),
        aacc=float(tp.sum() / total) if total else math.nan,
        macc=macc,
        macc_classes=macc_n,
        miou=miou,
        miou_classes=miou_n,
        mdice=mdice,
        mdice_classes=mdice_n,
        fwiou=fwiou,
        pixels=total,
    )


# -- object-level scores -----------------------------------------------------------------


def _full_structure() -> NDArray[np.bool_]:
    return np.ones((3, 3), bool)


def connected_objects(
    prediction: NDArray[np.integer], num_classes: int, *, connectivity: int = 2
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Predicted objects: connected components of each non-background class.

    Returns ``(objects, object_class)``: an int32 map (0 = no object, 1..N objects)
    and the class of object ``i`` at ``object_class[i - 1]``. ``connectivity`` 2 joins
    diagonal neighbours (8-connectivity), 1 only edge neighbours.
    """
    from scipy import ndimage

    if connectivity not in (1, 2):
        raise MetricsError(f"connectivity must be 1 or 2, got {connectivity!r}")
    structure = _full_structure() if connectivity == 2 else None
    objects = np.zeros(prediction.shape, np.int32)
    object_class: list[int] = []
    for c in np.unique(prediction):
        if not 1 <= c < num_classes:
            continue
        labels, count = ndimage.label(prediction == c, structure=structure)
        if count:
            inside = labels > 0
            objects[inside] = labels[inside] + len(object_class)
            object_class.extend([int(c)] * count)
    return objects, np.array(object_class, np.int64)


def _instance_classes(
    instances: NDArray[np.integer], classes: NDArray[np.integer], num_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Compact ``instances`` (0 = none) to 1..N; the majority class of each instance."""
    ids, compact = np.unique(instances.reshape(-1), return_inverse=True)
    compact = compact.reshape(instances.shape).astype(np.int64)
    if ids.size and ids[0] == 0:
        ids = ids[1:]
    else:
        compact += 1
    n = ids.size
    if n == 0:
        return compact * 0, np.zeros(0, np.int64)
    cls = np.clip(classes.astype(np.int64), 0, num_classes)  # num_classes = "other"
    votes = np.bincount(
        compact.reshape(-1) * (num_classes + 1) + cls.reshape(-1),
        minlength=(n + 1) * (num_classes + 1),
    ).reshape(n + 1, num_classes + 1)
    return compact, votes[1:, :num_classes].argmax(axis=1).astype(np.int64)


def match_objects(iou: NDArray[np.floating], threshold: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one matches ``(gt, prediction)`` among pairs with ``iou >= threshold``.

    Hungarian assignment (``scipy.optimize.linear_sum_assignment``) maximising the
    summed IoU of the matched pairs. For thresholds above 0.5 a pair can only overlap
    one partner that well, so the matching is unique; the assignment settles exact ties.
    """
    from scipy.optimize import linear_sum_assignment

    iou = np.asarray(iou, np.float64)
    if iou.size == 0:
        return []
    if not np.isfinite(iou).all():
        raise MetricsError("IoU values must be finite")
    weights = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]


@dataclass(frozen=True)
class ImageObjects:
    """Object matching of one image for one class: what :class:`ObjectCounts` sums."""

    gt: int
    pred: int
    matched: tuple[int, ...]  # matches with IoU >= each of IOU_THRESHOLDS
    merges: int
    splits: int


def match_image_objects(
    gt_instance_classes: NDArray[np.int64],
    pred_object_classes: NDArray[np.int64],
    intersection: NDArray[np.int64],
    gt_area: NDArray[np.int64],
    pred_area: NDArray[np.int64],
    cls: int,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> ImageObjects:
    """Match the objects of class ``cls`` given their pairwise overlaps (pixel counts).

    A merge is a predicted object holding more than half of the pixels of each of at
    least two ground-truth objects; a split is a ground-truth object holding more than
    half of the pixels of each of at least two predicted objects.
    """
    g = np.flatnonzero(gt_instance_classes == cls)
    p = np.flatnonzero(pred_object_classes == cls)
    inter = intersection[np.ix_(g, p)]
    ga, pa = gt_area[g][:, None], pred_area[p][None, :]
    union = ga + pa - inter
    iou = _ratio(inter, union)
    iou = np.nan_to_num(iou)
    pairs = match_objects(iou, min(thresholds)) if inter.size else []
    matched_iou = np.array([iou[r, c] for r, c in pairs])
    matched = tuple(int((matched_iou >= t).sum()) for t in thresholds)
    merges = int(((2 * inter > ga).sum(axis=0) >= 2).sum()) if inter.size else 0
    splits = int(((2 * inter > pa).sum(axis=1) >= 2).sum()) if inter.size else 0
    return ImageObjects(int(g.size), int(p.size), matched, merges, splits)


@dataclass(frozen=True)
class ObjectScores:
    """Object-level scores per class (index = class id) and pooled over classes 1..K-1."""

    thresholds: tuple[float, ...]
    gt_objects: tuple[int, ...]
    pred_objects: tuple[int, ...]
    matched: tuple[int, ...]  # at IoU >= 0.5
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    merges: tuple[int, ...]
    splits: tuple[int, ...]
    ap: tuple[float, ...]  # mean over thresholds of TP / (TP + FP + FN)
    pooled: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: NaN becomes ``null``; class 0 (background) is left out."""
        return {
            "thresholds": list(self.thresholds),
            "per_class": [
                {
                    "id": c,
                    "gt_objects": self.gt_objects[c],
                    "pred_objects": self.pred_objects[c],
                    "matched": self.matched[c],
                    "precision": _json_float(self.precision[c]),
                    "recall": _json_float(self.recall[c]),
                    "f1": _json_float(self.f1[c]),
                    "merges": self.merges[c],
                    "splits": self.splits[c],
                    "ap": _json_float(self.ap[c]),
                }
                for c in range(1, len(self.gt_objects))
            ],
            "pooled": {
                k: _json_float(v) if isinstance(v, float) else v for k, v in self.pooled.items()
            },
        }


def _object_rates(
    gt: NDArray[np.int64], pred: NDArray[np.int64], matched: NDArray[np.int64]
) -> dict[str, NDArray[np.float64]]:
    """precision, recall, F1 at the first threshold and AP over all, for count arrays."""
    tp = matched[..., 0]
    denominators = gt[..., None] + pred[..., None] - matched
    return {
        "precision": _ratio(tp, pred),
        "recall": _ratio(tp, gt),
        "f1": _ratio(2 * tp, gt + pred),
        # The denominators are 0 at every threshold or at none (gt + pred == 0).
        "ap": _ratio(matched, denominators).mean(axis=-1),
    }


class ObjectCounts:
    """Object-level separation counts over a dataset, per class.

    Ground-truth objects are the instances of an instance mask (0 = none; the ignore
    value 255, or 65535 in a 16-bit mask, is none too), each given the majority class
    of its pixels. Predicted objects are connected components of each predicted class,
    or the instances a model provides. Pixels whose ground-truth class is
    ``ignore_index`` are left out of every area. Matching is per class and one-to-one
    (:func:`match_objects`); background (class 0) has no objects.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = IGNORE_INDEX,
        *,
        thresholds: Sequence[float] = IOU_THRESHOLDS,
        connectivity: int = 2,
    ) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = _check_ignore_index(ignore_index, self.num_classes)
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds or not all(0 < t <= 1 for t in self.thresholds):
            raise MetricsError("thresholds must be IoU values in (0, 1]")
        self.connectivity = connectivity
        k, n = self.num_classes, len(self.thresholds)
        self.gt = np.zeros(k, np.int64)
        self.pred = np.zeros(k, np.int64)
        self.matched = np.zeros((k, n), np.int64)
        self.merges = np.zeros(k, np.int64)
        self.splits = np.zeros(k, np.int64)

    def update(
        self,
        gt_class: NDArray[np.integer],
        gt_instance: NDArray[np.integer],
        pred_class: NDArray[np.integer],
        pred_instance: NDArray[np.integer] | None = None,
    ) -> dict[int, ImageObjects]:
        """Count one image; returns its per-class matching (for per-image output)."""
        gt_class = np.asarray(gt_class)
        gt_instance = np.asarray(gt_instance)
        pred_class = np.asarray(pred_class)
        if not gt_class.shape == gt_instance.shape == pred_class.shape:
            raise MetricsError(
                f"shapes differ: class {gt_class.shape}, instance {gt_instance.shape}, "
                f"prediction {pred_class.shape}"
            )
        k = self.num_classes
        valid = np.ones(gt_class.shape, bool)
        if self.ignore_index is not None:
            valid = gt_class != self.ignore_index
        instance_ignore = np.iinfo(gt_instance.dtype).max if gt_instance.dtype.kind == "u" else -1
        gt_inst = np.where(
            valid & (gt_instance != instance_ignore) & (gt_instance > 0), gt_instance, 0
        )
        gt_inst, gt_cls = _instance_classes(gt_inst, gt_class, k)
        if pred_instance is None:
            pred_obj, pred_cls = connected_objects(pred_class, k, connectivity=self.connectivity)
            pred_obj = pred_obj.astype(np.int64)
        else:
            if np.asarray(pred_instance).shape != pred_class.shape:
                raise MetricsError("pred_instance and pred_class shapes differ")
            pred_obj, pred_cls = _instance_classes(np.asarray(pred_instance), pred_class, k)
        n_gt, n_pred = gt_cls.size, pred_cls.size
        codes = gt_inst[valid] * (n_pred + 1) + pred_obj[valid]
        joint = np.bincount(codes, minlength=(n_gt + 1) * (n_pred + 1)).reshape(
            n_gt + 1, n_pred + 1
        )
        gt_area = joint[1:].sum(axis=1)
        pred_area = joint[:, 1:].sum(axis=0)
        intersection = joint[1:, 1:]
        # A predicted object entirely on ignored pixels is neither right nor wrong.
        pred_cls = np.where(pred_area > 0, pred_cls, -1)
        gt_cls = np.where(gt_area > 0, gt_cls, -1)
        result = {}
        for c in range(1, k):
            image = match_image_objects(
                gt_cls, pred_cls, intersection, gt_area, pred_area, c, self.thresholds
            )
            if image.gt or image.pred:
                result[c] = image
                self.gt[c] += image.gt
                self.pred[c] += image.pred
                self.matched[c] += image.matched
                self.merges[c] += image.merges
                self.splits[c] += image.splits
        return result

    def __add__(self, other: ObjectCounts) -> ObjectCounts:
        if not isinstance(other, ObjectCounts):
            raise TypeError(f"cannot combine ObjectCounts with {type(other).__name__}")
        if (other.num_classes, other.thresholds) != (self.num_classes, self.thresholds):
            raise MetricsError("cannot combine object counts of different classes or thresholds")
        total = ObjectCounts(
            self.num_classes,
            self.ignore_index,
            thresholds=self.thresholds,
            connectivity=self.connectivity,
        )
        for name in ("gt", "pred", "matched", "merges", "splits"):
            setattr(total, name, getattr(self, name) + getattr(other, name))
        return total

    def to_dict(self) -> dict[str, Any]:
        """The raw counts, JSON-ready; :meth:`from_dict` reads them back."""
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "thresholds": list(self.thresholds),
            "connectivity": self.connectivity,
            "gt": self.gt.tolist(),
            "pred": self.pred.tolist(),
            "matched": self.matched.tolist(),
            "merges": self.merges.tolist(),
            "splits": self.splits.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectCounts:
        """Rebuild counts from :meth:`to_dict`; ``ValueError`` on a malformed dict."""
        try:
            counts = cls(
                data["num_classes"],
                data.get("ignore_index", IGNORE_INDEX),
                thresholds=data["thresholds"],
                connectivity=data.get("connectivity", 2),
            )
            k, n = counts.num_classes, len(counts.thresholds)
            for name, shape in (
                ("gt", (k,)),
                ("pred", (k,)),
                ("matched", (k, n)),
                ("merges", (k,)),
                ("splits", (k,)),
            ):
                value = np.array(data[name], dtype=np.int64)
                if value.shape != shape or (value < 0).any():
                    raise MetricsError(f"{name!r} must be {shape} non-negative integers")
                setattr(counts, name, value)
        except (KeyError, TypeError, OverflowError) as error:
            raise MetricsError(f"malformed object counts: {error}") from None
        except ValueError as error:  # numpy on ragged lists; our own MetricsError too
            if isinstance(error, MetricsError):
                raise
            raise MetricsError(f"malformed object counts: {error}") from None
        return counts

    def scores(self) -> ObjectScores:
        """Per-class precision, recall, F1 at IoU 0.5, merges, splits and AP."""
        rates = _object_rates(self.gt, self.pred, self.matched)
        fg = slice(1, None)
        gt, pred, matched = self.gt[fg].sum(), self.pred[fg].sum(), self.matched[fg].sum(axis=0)
        pooled_rates = _object_rates(np.array(gt), np.array(pred), matched)
        pooled = {
            "gt_objects": int(gt),
            "pred_objects": int(pred),
            "matched": int(matched[0]),
            "merges": int(self.merges[fg].sum()),
            "splits": int(self.splits[fg].sum()),
            **{name: float(value) for name, value in pooled_rates.items()},
        }
        return ObjectScores(
            thresholds=self.thresholds,
            gt_objects=tuple(int(v) for v in self.gt),
            pred_objects=tuple(int(v) for v in self.pred),
            matched=tuple(int(v) for v in self.matched[:, 0]),
            precision=tuple(float(v) for v in rates["precision"]),
            recall=tuple(float(v) for v in rates["recall"]),
            f1=tuple(float(v) for v in rates["f1"]),
            merges=tuple(int(v) for v in self.merges),
            splits=tuple(int(v) for v in self.splits),
            ap=tuple(float(v) for v in rates["ap"]),
            pooled=pooled,
        )
