"""Fuzzing the metrics with hostile arrays and saved counts: a result or one SegkitError line.

Counts come back from files (``report.json``, a run's confusion matrix), so their
readers must refuse anything malformed with a ``MetricsError`` (a ``SegkitError`` and a
``ValueError``), never crash with another exception or allocate without bound.
"""

from __future__ import annotations

import math

import numpy as np
from helpers_fuzz import FUZZ, json_values, mutate, result_or_segkit_error
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segkit.errors import MetricsError
from segkit.metrics import (
    ConfusionMatrix,
    ObjectCounts,
    PixelScores,
    connected_objects,
    match_objects,
    pixel_scores,
)

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int8, np.int32, np.int64, np.bool_, np.float32])
shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)


def arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, shape))


@FUZZ
@given(st.integers(1, 255), shapes.flatmap(lambda s: st.tuples(arrays(s), arrays(s))))
def test_confusion_update_any_arrays(k: int, pair: tuple[np.ndarray, np.ndarray]) -> None:
    """Ids of any dtype and value: counted exactly (ignore left out), or refused."""
    target, prediction = pair
    matrix = ConfusionMatrix(k)
    outcome = result_or_segkit_error(lambda: matrix.update(target, prediction))
    if outcome is None:
        scored = (target.astype(np.int64) != 255).sum()
        assert matrix.matrix.sum() == scored
        assert matrix.ignored_pixels == target.size - scored
    else:
        assert isinstance(outcome, MetricsError)
        assert matrix.matrix.sum() == 0


def _saved_matrix() -> dict:
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 1, 2, 255, 1], np.uint8), np.array([0, 2, 2, 1, 1], np.uint8))
    return matrix.to_dict()


def _saved_objects() -> dict:
    counts = ObjectCounts(3)
    gt = np.array([[0, 1, 1], [0, 0, 2], [2, 0, 2]], np.uint8)
    counts.update(gt, gt, (gt > 0).astype(np.uint8))
    return counts.to_dict()


SAVED = {"confusion": _saved_matrix(), "objects": _saved_objects()}


@FUZZ
@given(st.data(), st.sampled_from(sorted(SAVED)))
def test_saved_counts_with_one_field_changed(data: st.DataObject, kind: str) -> None:
    changed = mutate(SAVED[kind], data)
    reader = ConfusionMatrix.from_dict if kind == "confusion" else ObjectCounts.from_dict
    outcome = result_or_segkit_error(lambda: reader(changed))
    if isinstance(outcome, ConfusionMatrix):
        assert isinstance(outcome.scores(), PixelScores)
    elif isinstance(outcome, ObjectCounts):
        outcome.scores()
    else:
        assert isinstance(outcome, MetricsError)


@FUZZ
@given(json_values)
def test_saved_counts_any_json(value: object) -> None:
    for reader in (ConfusionMatrix.from_dict, ObjectCounts.from_dict):
        outcome = result_or_segkit_error(lambda reader=reader: reader(value))  # type: ignore[misc]
        assert isinstance(outcome, ConfusionMatrix | ObjectCounts | MetricsError)


@FUZZ
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
        elements=st.floats(-10, 10**6) | st.just(math.nan) | st.integers(0, 10**6),
    ),
    st.booleans(),
)
def test_pixel_scores_any_matrix(matrix: np.ndarray, integral: bool) -> None:
    if integral:
        matrix = np.nan_to_num(matrix).astype(np.int64)
    outcome = result_or_segkit_error(lambda: pixel_scores(matrix))
    if isinstance(outcome, PixelScores):
        assert all(math.isnan(v) or -1e-9 <= v <= 1 + 1e-9 for v in outcome.iou)
    else:
        assert isinstance(outcome, MetricsError)


@FUZZ
@given(hnp.arrays(np.float64, st.tuples(st.integers(0, 5), st.integers(0, 5))), st.floats(0, 1))
def test_match_objects_any_iou(iou: np.ndarray, threshold: float) -> None:
    outcome = result_or_segkit_error(lambda: match_objects(iou, threshold))
    if isinstance(outcome, list):
        rows = [r for r, _ in outcome]
        cols = [c for _, c in outcome]
        assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)


@FUZZ
@given(
    DTYPES.flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=2, max_dims=2, max_side=8))),
    st.integers(1, 300),
)
def test_connected_objects_any_mask(mask: np.ndarray, k: int) -> None:
    result_or_segkit_error(lambda: connected_objects(mask, k))


@FUZZ
@given(
    st.integers(1, 6),
    st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
        lambda s: st.tuples(*(arrays(s) for _ in range(3)))
    ),
)
def test_object_counts_any_masks(k: int, masks: tuple[np.ndarray, ...]) -> None:
    gt_class, gt_instance, pred_class = masks
    counts = ObjectCounts(k)
    result_or_segkit_error(lambda: counts.update(gt_class, gt_instance, pred_class))
