"""Class statistics, class-balancing weights and U-Net border weight maps (pure numpy/scipy).

Nothing here reads files or prints; :mod:`segkit.weights_stage` is the file shell.

Class weights
-------------
Every scheme starts from the labelled pixels of the chosen images (ignore pixels are
never counted). With ``n_c`` the pixels of class ``c``, ``N = sum(n_c)`` and
``f_c = n_c / N`` the raw, published weights are:

``inverse-frequency``
    ``1 / f_c``.
``median-frequency`` (Eigen & Fergus 2015)
    ``median(freq) / freq_c`` with ``freq_c = n_c / P_c``, where ``P_c`` is the number of
    labelled pixels in the images that contain class ``c``; the median runs over the
    classes that occur.
``enet`` (Paszke et al. 2016)
    ``1 / ln(1.02 + f_c)``.
``effective-number`` (Cui et al. 2019)
    ``(1 - beta) / (1 - beta ** n_c)``, the inverse of the effective number of samples.
    Pixel counts are large, so ``beta`` must be very close to 1 for the weights to differ
    (``beta -> 1`` tends to inverse frequency, ``beta = 0`` gives uniform weights).
``pos-weight`` (binary tasks only)
    ``[1, n_0 / n_1]``: the ``pos_weight`` of ``BCEWithLogitsLoss`` (negatives/positives).
``uniform``
    all ones.

Normalisation: the raw weights are scaled so that their mean over the labelled pixels
is 1 (``sum(f_c * w_c) == 1``); the loss then keeps the scale it has without weights and
the border term ``w0`` keeps its meaning. Zero-pixel rule: a class without pixels gets
the largest weight of the classes that have pixels (it would be the rarest class), so no
weight is ever infinite or NaN; with no labelled pixels at all every weight is 1.

Border weight maps
------------------
``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))`` (Ronneberger et al.
2015), with ``d1``/``d2`` the Euclidean distances to the nearest and the second-nearest
object. An image with fewer than two objects has no second-nearest object (``d2 = inf``)
and so no border term.

The straightforward method runs one full-image distance transform per object, so its
cost grows with the number of objects. Here both distances come from one exact
separable pass, built like an exact EDT (rows, then columns), that does not depend on
the number of objects:

1. along each row, every pixel keeps the nearest object pixel, its label, and the
   nearest pixel whose label differs from that one (two running-maximum scans per
   direction). That pair answers "nearest pixel in this row whose label is not ``l``"
   for *any* ``l``;
2. combining the rows within ``R`` of a pixel gives ``d1`` and its object's label
   exactly, then ``d2`` exactly: the smallest ``dy**2 + dx**2`` over rows, taking each
   row's nearest pixel of a label other than the pixel's own nearest object.

The pass only looks ``R = sigma * sqrt(2 ln(w0 / tol))`` pixels away (24 px for the
defaults): where ``d1 + d2 > R`` the true term is below ``tol`` and the map gets 0 there;
everywhere else ``d1`` and ``d2`` are exact (integer arithmetic). So the only
approximation is that cut-off, and the absolute error at every pixel is at most ``tol``
(default ``1e-4``). The cost is ``O(H * W * R)`` in cheap vectorised steps, about twice a
single scipy EDT of a 512x512 image with the default ``sigma``, whatever the number of
objects; it grows linearly with ``sigma``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from segkit.defaults import DEFAULT_BETA as DEFAULT_BETA
from segkit.defaults import DEFAULT_SIGMA as DEFAULT_SIGMA
from segkit.defaults import DEFAULT_W0 as DEFAULT_W0
from segkit.errors import OptionError
from segkit.voc import IGNORE_INDEX, IGNORE_INDEX_16

SCHEMES = (
    "median-frequency",
    "inverse-frequency",
    "enet",
    "effective-number",
    "pos-weight",
    "uniform",
)
Scheme = Literal[
    "median-frequency", "inverse-frequency", "enet", "effective-number", "pos-weight", "uniform"
]
BorderOn = Literal["background", "all"]
ENET_C = 1.02
DEFAULT_TOLERANCE = 1e-4

# Rows of the distance pass handled together: small enough to stay in cache.
_BLOCK_ROWS = 64


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class ClassStats:
    """Pixel statistics of ``K`` classes over a set of masks (ignore pixels excluded).

    ``pixels[c]`` labelled pixels of class ``c``; ``images[c]`` images containing ``c``;
    ``image_pixels[c]`` labelled pixels of those images (the denominator of median-frequency
    balancing); ``ignored`` ignore pixels; ``num_images`` masks counted.
    """

    pixels: NDArray[np.int64]
    images: NDArray[np.int64]
    image_pixels: NDArray[np.int64]
    num_images: int
    ignored: int = 0

    @property
    def num_classes(self) -> int:
        """``K``."""
        return int(self.pixels.size)

    @property
    def total(self) -> int:
        """Labelled (non-ignore) pixels."""
        return int(self.pixels.sum())

    @property
    def frequencies(self) -> NDArray[np.float64]:
        """``pixels / total`` (all zeros when nothing is labelled)."""
        total = self.total
        if total == 0:
            return np.zeros(self.num_classes)
        return self.pixels / total

    @classmethod
    def empty(cls, num_classes: int) -> ClassStats:
        """Statistics of no images."""
        zeros = np.zeros(num_classes, dtype=np.int64)
        return cls(zeros, zeros.copy(), zeros.copy(), 0, 0)

    def __add__(self, other: ClassStats) -> ClassStats:
        if self.num_classes != other.num_classes:
            raise ValueError(
                f"cannot add stats of {self.num_classes} and {other.num_classes} classes"
            )
        return ClassStats(
            self.pixels + other.pixels,
            self.images + other.images,
            self.image_pixels + other.image_pixels,
            self.num_images + other.num_images,
            self.ignored + other.ignored,
        )


def mask_histogram(mask: NDArray[np.integer]) -> NDArray[np.int64]:
    """Pixels per stored value of a class mask, length ``max(256, max value + 1)``.

    >>> mask_histogram(np.array([[0, 1], [1, 255]], dtype=np.uint8))[[0, 1, 255]].tolist()
    [1, 2, 1]
    """
    return np.bincount(mask.ravel(), minlength=256).astype(np.int64)


def out_of_range_ids(
    histogram: NDArray[np.integer], num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> list[int]:
    """Values present in ``histogram`` that are neither a class id ``< num_classes`` nor ignore."""
    present = np.flatnonzero(histogram)
    return [int(v) for v in present if v >= num_classes and v != ignore_index]


def stats_from_histogram(
    histogram: NDArray[np.integer], num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> ClassStats:
    """:class:`ClassStats` of one mask from its :func:`mask_histogram`.

    Values other than class ids and ``ignore_index`` must be checked with
    :func:`out_of_range_ids` first; here they are dropped.
    """
    histogram = np.asarray(histogram, dtype=np.int64)
    pixels = np.zeros(num_classes, dtype=np.int64)
    used = min(num_classes, histogram.size)
    pixels[:used] = histogram[:used]
    if ignore_index < num_classes:
        pixels[ignore_index] = 0
    present = pixels > 0
    labelled = int(pixels.sum())
    ignored = int(histogram[ignore_index]) if ignore_index < histogram.size else 0
    return ClassStats(
        pixels,
        present.astype(np.int64),
        np.where(present, labelled, 0).astype(np.int64),
        1,
        ignored,
    )


def class_stats(
    masks: Iterable[NDArray[np.integer]], num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> ClassStats:
    """Pixel statistics of ``num_classes`` classes over ``masks`` (ignore pixels excluded).

    >>> s = class_stats([np.array([[0, 0, 1, 255]], dtype=np.uint8)], 2)
    >>> s.pixels.tolist(), s.ignored, s.frequencies.round(3).tolist()
    ([2, 1], 1, [0.667, 0.333])
    """
    total = ClassStats.empty(num_classes)
    for mask in masks:
        total = total + stats_from_histogram(
            mask_histogram(mask), num_classes, ignore_index=ignore_index
        )
    return total


# ------------------------------------------------------------------------ class weights


def check_scheme(
    scheme: str, *, beta: float = DEFAULT_BETA, num_classes: int | None = None
) -> None:
    """Raise :class:`OptionError` unless ``scheme`` and ``beta`` can be used."""
    if scheme not in SCHEMES:
        raise OptionError(
            f"unknown weighting scheme {scheme!r}; choose one of {', '.join(SCHEMES)}"
        )
    if not (0.0 <= beta < 1.0) or math.isnan(beta):
        raise OptionError(f"--beta must be in [0, 1), got {beta}")
    if scheme == "pos-weight" and num_classes is not None and num_classes != 2:
        raise OptionError(
            f"scheme 'pos-weight' is for binary tasks (2 classes: background and one class); "
            f"this dataset has {num_classes}"
        )


def raw_class_weights(
    stats: ClassStats, scheme: str, *, beta: float = DEFAULT_BETA
) -> NDArray[np.float64]:
    """The published, unnormalised weights of ``scheme`` (NaN for classes without pixels).

    >>> s = ClassStats(np.array([30, 10]), np.array([2, 1]), np.array([40, 20]), 2)
    >>> raw_class_weights(s, "inverse-frequency").tolist()
    [1.3333333333333333, 4.0]
    >>> raw_class_weights(s, "pos-weight").tolist()
    [1.0, 3.0]
    """
    check_scheme(scheme, beta=beta, num_classes=stats.num_classes)
    pixels = stats.pixels.astype(np.float64)
    present = stats.pixels > 0
    weights = np.full(stats.num_classes, np.nan)
    if not present.any():
        return weights
    freq = stats.frequencies
    if scheme == "inverse-frequency":
        weights[present] = 1.0 / freq[present]
    elif scheme == "median-frequency":
        image_freq = pixels[present] / stats.image_pixels[present]
        weights[present] = np.median(image_freq) / image_freq
    elif scheme == "enet":
        weights[present] = 1.0 / np.log(ENET_C + freq[present])
    elif scheme == "effective-number":
        # 1 - beta**n computed as -expm1(n ln beta): exact for beta near 1 and huge n.
        effective = -np.expm1(pixels[present] * np.log(beta)) if beta > 0 else np.ones(1)
        weights[present] = (1.0 - beta) / effective
    elif scheme == "pos-weight":
        weights[:] = 1.0
        if present.all():
            weights[1] = pixels[0] / pixels[1]
    else:  # uniform
        weights[:] = 1.0
    return weights


def normalize_class_weights(raw: NDArray[np.floating], stats: ClassStats) -> NDArray[np.float64]:
    """Scale ``raw`` so that ``sum(f_c * w_c) == 1``, then apply the zero-pixel rule.

    Classes whose raw weight is NaN (no pixels) get the largest weight of the others.

    >>> s = ClassStats(np.array([3, 1, 0]), np.array([1, 1, 0]), np.array([4, 4, 0]), 1)
    >>> normalize_class_weights(np.array([4 / 3, 4.0, np.nan]), s).tolist()
    [0.6666666666666666, 2.0, 2.0]
    """
    weights = np.array(raw, dtype=np.float64)
    known = np.isfinite(weights)
    if not known.any() or stats.total == 0:
        return np.ones_like(weights)
    scale = float(np.sum(stats.frequencies[known] * weights[known]))
    if scale > 0:
        weights[known] /= scale
    weights[~known] = weights[known].max()
    return weights


def class_weights(
    stats: ClassStats, scheme: str = "median-frequency", *, beta: float = DEFAULT_BETA
) -> NDArray[np.float64]:
    """Normalised class weights of ``scheme`` (see the module docstring), shape ``(K,)``.

    >>> s = class_stats([np.array([[0, 0, 0, 1]], dtype=np.uint8)], 3)
    >>> class_weights(s, "inverse-frequency").tolist()
    [0.6666666666666666, 2.0, 2.0]
    """
    return normalize_class_weights(raw_class_weights(stats, scheme, beta=beta), stats)


def pos_weight(stats: ClassStats) -> float | None:
    """``negatives / positives`` for a binary task, ``None`` when ``K != 2``.

    1.0 when either class has no pixels (nothing to balance).
    """
    if stats.num_classes != 2:
        return None
    negatives, positives = (int(v) for v in stats.pixels)
    if negatives == 0 or positives == 0:
        return 1.0
    return negatives / positives


# ------------------------------------------------------------------------------ objects


def objects_from_classes(
    class_mask: NDArray[np.integer], *, ignore_index: int = IGNORE_INDEX
) -> NDArray[np.int32]:
    """Objects as the 8-connected components of each class ``>= 1``: ids ``1..N``, 0 elsewhere.

    Used when an image has no instance mask. Touching regions of the same class form one
    object; regions of different classes are always different objects.

    >>> objects_from_classes(np.array([[1, 1, 0, 1], [0, 2, 0, 1]], dtype=np.uint8)).tolist()
    [[1, 1, 0, 2], [0, 3, 0, 2]]
    """
    objects = np.zeros(class_mask.shape, dtype=np.int32)
    structure = np.ones((3, 3), dtype=bool)
    count = 0
    for value in np.flatnonzero(np.bincount(class_mask.ravel())):
        if value == 0 or value == ignore_index:
            continue
        labels, found = ndimage.label(class_mask == value, structure=structure)
        inside = labels > 0
        objects[inside] = labels[inside] + count
        count += found
    return objects


def objects_from_instances(
    instance_mask: NDArray[np.integer],
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """Split a stored instance mask into object ids (ignore → 0) and its ignore mask.

    The ignore value is 255 for 8-bit masks and 65535 for 16-bit ones.
    """
    ignore_value = IGNORE_INDEX_16 if instance_mask.dtype == np.uint16 else IGNORE_INDEX
    ignore = instance_mask == ignore_value
    objects = instance_mask.astype(np.int32)
    objects[ignore] = 0
    return objects, ignore


# ----------------------------------------------------------------------- border term


def border_cutoff(w0: float, sigma: float, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """``R`` with ``w0 * exp(-R**2 / (2 sigma**2)) == tolerance``: beyond ``d1 + d2 > R`` the term is below ``tolerance``.

    >>> round(border_cutoff(10, 5, 1e-4), 3)
    23.993
    """
    _check_border_options(w0, sigma, tolerance)
    if w0 <= tolerance:
        return 0.0
    return sigma * math.sqrt(2.0 * math.log(w0 / tolerance))


def _check_border_options(w0: float, sigma: float, tolerance: float) -> None:
    if not (math.isfinite(w0) and w0 >= 0):
        raise OptionError(f"--w0 must be a finite number >= 0, got {w0}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise OptionError(f"--sigma must be a finite number > 0, got {sigma}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise OptionError(f"tolerance must be > 0, got {tolerance}")


def object_distances(
    objects: NDArray[np.integer],
    *,
    max_distance: float = math.inf,
    where: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distances ``(d1, d2)`` from every pixel to the nearest and the second-nearest object.

    ``objects`` holds object ids (``> 0``; 0 is no object). ``d2`` is the distance to the
    nearest pixel of any object other than the nearest one, so inside an object ``d1 == 0``
    and ``d2`` is the distance to the closest other object. ``d1`` is exact everywhere
    (``inf`` without objects). ``d2`` is exact where it is at most ``max_distance``, ``inf``
    where it is larger or there are fewer than two objects, and is only computed where
    ``where`` is true (``inf`` elsewhere). The cost grows with ``max_distance``, not with
    the number of objects.

    >>> d1, d2 = object_distances(np.array([[1, 0, 0, 2]]))
    >>> d1.tolist(), d2.tolist()
    ([[0.0, 1.0, 1.0, 0.0]], [[3.0, 2.0, 2.0, 3.0]])
    """
    objects = _check_objects(objects)
    wanted = _check_where(where, objects.shape)
    d1 = np.full(objects.shape, np.inf)
    d2 = np.full(objects.shape, np.inf)
    inside = objects > 0
    if not inside.any():
        return d1, d2
    labels = _compact_labels(objects)
    # d1 and the nearest object's label everywhere: one exact EDT with indices.
    nearest_row, nearest_col = ndimage.distance_transform_edt(
        ~inside, return_distances=False, return_indices=True
    )
    height, width = objects.shape
    own = labels.ravel()[(nearest_row * width + nearest_col).ravel()].reshape(objects.shape)
    d1_squared = (nearest_row - np.arange(height)[:, None]) ** 2
    d1_squared += (nearest_col - np.arange(width)[None, :]) ** 2
    np.sqrt(d1_squared, out=d1)
    if int(labels.max()) < 2 or not wanted.any():
        return d1, d2
    reach = math.floor(min(max_distance, height + width))
    rows = _RowNearest.scan(inside, labels, reach)
    best = rows.second_nearest_squared(own, wanted, reach)
    # Real candidates are below height**2 + width**2; pixels without one keep a larger value.
    found = wanted & (best <= min(max_distance**2, height**2 + width**2))
    d2[found] = np.sqrt(best[found], dtype=np.float64)
    return d1, d2


def _check_objects(objects: NDArray[np.integer]) -> NDArray[np.integer]:
    objects = np.asarray(objects)
    if objects.ndim != 2 or not np.issubdtype(objects.dtype, np.integer):
        raise ValueError(
            f"objects must be a 2-D integer array, got {objects.dtype} {objects.shape}"
        )
    if objects.size and objects.min() < 0:
        raise ValueError("object ids must be >= 0")
    return objects


def _check_where(where: NDArray[np.bool_] | None, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    if where is None:
        return np.ones(shape, dtype=bool)
    where = np.asarray(where, dtype=bool)
    if where.shape != shape:
        raise ValueError(f"where has shape {where.shape}, objects {shape}")
    return where


def _compact_labels(objects: NDArray[np.integer]) -> NDArray[np.int32]:
    # Ids 1..N, so that they pack into few bits and compare as int16.
    top = int(objects.max())
    if top > max(2**16, objects.size):  # huge ids: a lookup table would not fit
        ids, labels = np.unique(objects, return_inverse=True)
        return (labels.reshape(objects.shape) + (ids[0] > 0)).astype(np.int32)
    present = np.bincount(objects.ravel()) > 0
    present[0] = False
    count = int(present.sum())
    if present[1 : count + 1].all():
        return objects.astype(np.int32, copy=False)
    lookup = np.cumsum(present, dtype=np.int32)
    lookup[~present] = 0
    return lookup[objects]


@dataclass(frozen=True)
class _RowNearest:
    """Per pixel, looking along its own row only (distances capped at ``reach + 1``):

    ``near_sq`` the squared distance to the nearest object pixel, ``near_label`` its label,
    ``other_sq`` the squared distance to the nearest pixel whose label is not ``near_label``.
    That pair answers "nearest pixel in this row with a label other than l" for any l:
    ``near_sq`` if ``near_label != l`` else ``other_sq``, which is what makes the exact
    separable second-nearest pass possible.
    """

    near_sq: NDArray[np.signedinteger]
    near_label: NDArray[np.signedinteger]
    other_sq: NDArray[np.signedinteger]
    label_bits: int

    @classmethod
    def scan(cls, inside: NDArray[np.bool_], labels: NDArray[np.int32], reach: int) -> _RowNearest:
        label_bits = max(1, int(labels.max()).bit_length())
        left, left_label, left_other = _scan_left(inside, labels, reach, label_bits)
        right, right_label, right_other = (
            np.ascontiguousarray(a[:, ::-1])
            for a in _scan_left(inside[:, ::-1], labels[:, ::-1], reach, label_bits)
        )
        from_left = left <= right
        near = np.where(from_left, left, right)
        near_label = np.where(from_left, left_label, right_label)
        same = left_label == right_label
        other = np.minimum(
            np.where(from_left | same, left_other, left),
            np.where(from_left & ~same, right, right_other),
        )
        # Everything below stays < 2 * (reach + 1)**2 + 1 and labels < 2**label_bits.
        small = 2 * (reach + 2) ** 2 < 2**15 and label_bits < 16
        dtype = np.int16 if small else np.int32
        return cls(
            np.square(near).astype(dtype),
            near_label.astype(dtype),
            np.square(other).astype(dtype),
            label_bits,
        )

    def nearest_squared(
        self, reach: int
    ) -> tuple[NDArray[np.signedinteger], NDArray[np.signedinteger]]:
        """Squared ``d1`` and the nearest object's label, exact where ``d1 <= reach``."""
        bits = self.label_bits
        largest = int(self.near_sq.max()) + reach * reach
        dtype = np.int64 if ((largest + 1) << bits) >= 2**31 else np.int32
        # Distance in the high bits, label in the low bits: one minimum carries both.
        key = (self.near_sq.astype(dtype) << bits) | self.near_label
        best = key.copy()
        height = key.shape[0]
        for shift in range(1, min(reach, height - 1) + 1):
            step = shift * shift << bits
            lower = key[shift:] + step
            np.minimum(best[:-shift], lower, out=best[:-shift])
            lower = key[:-shift] + step
            np.minimum(best[shift:], lower, out=best[shift:])
        return best >> bits, best & ((1 << bits) - 1)

    def second_nearest_squared(
        self, own: NDArray[np.integer], wanted: NDArray[np.bool_], reach: int
    ) -> NDArray[np.signedinteger]:
        """Squared distance to the nearest pixel whose label is not ``own``, at ``wanted``.

        Exact wherever that distance is at most ``reach``; larger values are upper bounds.
        """
        height, width = own.shape
        dtype = self.near_sq.dtype
        own = own.astype(dtype, copy=False)
        best = np.full((height, width), 2 * (reach + 2) ** 2, dtype=dtype)
        for top in range(0, height, _BLOCK_ROWS):
            bottom = min(height, top + _BLOCK_ROWS)
            columns = np.flatnonzero(wanted[top:bottom].any(axis=0))
            if columns.size == 0:
                continue
            cols = slice(int(columns[0]), int(columns[-1]) + 1)
            for shift in range(-reach, reach + 1):
                r0, r1 = max(top, -shift), min(bottom, height - shift)
                if r0 >= r1:
                    continue
                src = slice(r0 + shift, r1 + shift)
                candidate = np.where(
                    self.near_label[src, cols] != own[r0:r1, cols],
                    self.near_sq[src, cols],
                    self.other_sq[src, cols],
                )
                candidate += shift * shift
                np.minimum(best[r0:r1, cols], candidate, out=best[r0:r1, cols])
        return best


def _scan_left(
    inside: NDArray[np.bool_], labels: NDArray[np.int32], reach: int, label_bits: int
) -> tuple[NDArray[np.signedinteger], NDArray[np.signedinteger], NDArray[np.signedinteger]]:
    """Looking left along each row: distance to the nearest object pixel, its label, and
    distance to the nearest pixel of another label; distances capped at ``reach + 1``."""
    width = inside.shape[1]
    cap = reach + 1
    offset = cap + 1
    dtype = np.int64 if ((width + offset) << label_bits) >= 2**31 else np.int32
    label_mask = (1 << label_bits) - 1
    position = (np.arange(width, dtype=dtype) + offset)[None, :]
    # Position in the high bits and label in the low bits, so a running maximum carries
    # the label of the nearest pixel along; 0 means "no object pixel yet".
    key = np.where(inside, (position << label_bits) | labels, 0).astype(dtype, copy=False)
    np.maximum.accumulate(key, axis=1, out=key)
    # A run of one label starts where the previous object pixel has another label; for
    # every pixel of the run, the nearest pixel of another label is that previous pixel.
    other = np.zeros_like(key)
    previous = key[:, :-1]
    run_start = inside[:, 1:] & ((previous & label_mask) != labels[:, 1:])
    other[:, 1:] = np.where(run_start, previous, 0)
    np.maximum.accumulate(other, axis=1, out=other)
    near = np.minimum(position - (key >> label_bits), cap)
    far = np.minimum(position - (other >> label_bits), cap)
    return near, key & label_mask, far


def border_term(
    objects: NDArray[np.integer],
    *,
    w0: float = DEFAULT_W0,
    sigma: float = DEFAULT_SIGMA,
    where: NDArray[np.bool_] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> NDArray[np.float32]:
    """``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` at ``where`` (all pixels by default), else 0.

    At most ``tolerance`` (absolute, at every pixel) from the one-transform-per-object
    formula; 0 for images with fewer than two objects. ``objects`` as in
    :func:`object_distances`.

    >>> t = border_term(np.array([[1, 0, 0, 2]]), w0=10, sigma=5)
    >>> [round(float(v), 3) for v in t[0]]
    [8.353, 8.353, 8.353, 8.353]
    """
    objects = _check_objects(objects)
    wanted = _check_where(where, objects.shape)
    cutoff = border_cutoff(w0, sigma, tolerance)
    term = np.zeros(objects.shape, dtype=np.float32)
    inside = objects > 0
    if cutoff == 0.0 or not inside.any():
        return term
    labels = _compact_labels(objects)
    if int(labels.max()) < 2:
        return term
    # Only d1 + d2 <= cutoff matters and d2 >= d1, so both passes stop at the cutoff:
    # d1 (and the nearest label) is needed only up to cutoff / 2, d2 up to the cutoff.
    reach = math.floor(min(cutoff, sum(objects.shape)))
    rows = _RowNearest.scan(inside, labels, reach)
    d1_squared, own = rows.nearest_squared(math.floor(cutoff / 2))
    wanted = wanted & (d1_squared <= (cutoff / 2) ** 2)
    if not wanted.any():
        return term
    d2_squared = rows.second_nearest_squared(own, wanted, reach)
    total = np.sqrt(d1_squared[wanted], dtype=np.float64) + np.sqrt(
        d2_squared[wanted], dtype=np.float64
    )
    values = np.where(total <= cutoff, w0 * np.exp(-(total**2) / (2.0 * sigma * sigma)), 0.0)
    term[wanted] = values
    return term


def weight_map(
    class_mask: NDArray[np.integer],
    weights: NDArray[np.floating],
    objects: NDArray[np.integer] | None = None,
    *,
    w0: float = DEFAULT_W0,
    sigma: float = DEFAULT_SIGMA,
    border_on: str = "background",
    ignore: NDArray[np.bool_] | None = None,
    ignore_index: int = IGNORE_INDEX,
    tolerance: float = DEFAULT_TOLERANCE,
) -> NDArray[np.float32]:
    """Per-pixel weights ``w_c(x)`` (+ the border term when ``objects`` is given), float32.

    ``weights[c]`` is the weight of class ``c``; pixels equal to ``ignore_index`` or set in
    ``ignore`` get weight 0. The border term is added on background pixels (class 0) or,
    with ``border_on="all"``, on every labelled pixel.

    >>> weight_map(np.array([[0, 1, 255]], dtype=np.uint8), np.array([0.5, 2.0])).tolist()
    [[0.5, 2.0, 0.0]]
    """
    if border_on not in ("background", "all"):
        raise OptionError(f"--border-on must be 'background' or 'all', got {border_on!r}")
    class_mask = np.asarray(class_mask)
    table = np.zeros(max(256, int(class_mask.max(initial=0)) + 1), dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    table[: weights.size] = weights
    table[ignore_index] = 0.0
    result = table[class_mask]
    valid = class_mask != ignore_index
    if ignore is not None:
        valid &= ~ignore
        result[~valid] = 0.0
    if objects is not None:
        if objects.shape != class_mask.shape:
            raise ValueError(f"objects {objects.shape} and class mask {class_mask.shape} differ")
        where = valid & (class_mask == 0) if border_on == "background" else valid
        result += border_term(objects, w0=w0, sigma=sigma, where=where, tolerance=tolerance)
    return result
