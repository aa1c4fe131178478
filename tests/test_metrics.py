"""segkit.metrics: the confusion matrix against sklearn and torchmetrics, the derived scores,
and object matching against a brute-force matcher and hand-made cases."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import (
    confusion_matrix,
    jaccard_score,
    precision_recall_fscore_support,
)
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from segkit.metrics import (
    IOU_THRESHOLDS,
    ConfusionMatrix,
    ObjectCounts,
    _count_pixels,
    _count_runs,
    connected_objects,
    match_objects,
    pixel_scores,
)

IGNORE = 255


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray]:
    """(K, target, prediction): small uint8 masks with absent classes, ignore-only and
    single-class images among the draws."""
    k = draw(st.integers(1, 6))
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)))
    kind = draw(st.sampled_from(["random", "all_ignore", "single_class", "subset"]))
    pred = draw(arrays(np.uint8, shape, elements=st.integers(0, k - 1)))
    if kind == "all_ignore":
        target = np.full(shape, IGNORE, np.uint8)
    elif kind == "single_class":
        target = np.full(shape, draw(st.integers(0, k - 1)), np.uint8)
    else:
        top = k - 1 if kind == "random" else max(0, k - 3)  # subset: high classes absent
        values = st.one_of(st.integers(0, top), st.just(IGNORE))
        target = draw(arrays(np.uint8, shape, elements=values))
    return k, target, pred


def _scored(target: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = target != IGNORE
    return target[keep].astype(np.int64), pred[keep].astype(np.int64)


def _nan_equal(ours: tuple[float, ...], theirs: np.ndarray, rtol: float = 1e-12) -> None:
    np.testing.assert_allclose(np.array(ours, float), np.asarray(theirs, float), rtol=rtol)


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=80, deadline=None)
@given(batches())
def test_matrix_and_scores_equal_sklearn(case: tuple[int, np.ndarray, np.ndarray]) -> None:
    k, target, pred = case
    cm = ConfusionMatrix(k)
    for t, p in zip(target, pred, strict=True):  # one image at a time
        cm.update(t, p)
    t, p = _scored(target, pred)
    labels = list(range(k))
    expected = confusion_matrix(t, p, labels=labels) if t.size else np.zeros((k, k), np.int64)
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.matrix.dtype == np.int64
    assert cm.ignored_pixels == int((target == IGNORE).sum())
    scores = cm.scores()
    if not t.size:
        assert math.isnan(scores.miou) and scores.miou_classes == 0
        return
    # sklearn's zero_division=nan gives NaN exactly where segkit's denominators are 0.
    iou = jaccard_score(t, p, labels=labels, average=None, zero_division=0)
    iou = np.where(np.isin(labels, np.concatenate([t, p])), iou, np.nan)  # empty union
    precision, recall, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, average=None, zero_division=np.nan
    )
    _nan_equal(scores.iou, iou)
    _nan_equal(scores.precision, precision)
    _nan_equal(scores.recall, recall)
    # sklearn's F1 is NaN when precision or recall is; Dice = 2TP/(GT+pred) is 0 then
    # unless both are undefined (the class is absent from both).
    dice = np.where(np.isnan(f1) & (support + cm.matrix.sum(0) > 0), 0.0, f1)
    _nan_equal(scores.dice, dice)
    assert scores.gt_pixels == tuple(int(v) for v in support)
    assert scores.aacc == pytest.approx(float((t == p).mean()))
    assert scores.miou == pytest.approx(float(np.nanmean(iou)))
    assert scores.miou_classes == int((~np.isnan(iou)).sum())
    assert scores.macc == pytest.approx(float(np.nanmean(recall)))


@settings(max_examples=60, deadline=None)
@given(batches())
def test_matrix_and_miou_equal_torchmetrics(case: tuple[int, np.ndarray, np.ndarray]) -> None:
    k, target, pred = case
    if k < 2:
        return  # torchmetrics' multiclass metrics need two classes
    cm = ConfusionMatrix(k)
    cm.update(torch.from_numpy(target), torch.from_numpy(pred))
    tm = MulticlassConfusionMatrix(k, ignore_index=IGNORE)
    tm.update(torch.from_numpy(pred).long(), torch.from_numpy(target).long())
    np.testing.assert_array_equal(cm.matrix, tm.compute().numpy())
    # Per class, NaN where the union is empty; segkit's mIoU is their nanmean.
    jac = MulticlassJaccardIndex(k, ignore_index=IGNORE, average=None, zero_division=np.nan)
    jac.update(torch.from_numpy(pred).long(), torch.from_numpy(target).long())
    per_class = jac.compute().double().numpy()
    scores = cm.scores()
    _nan_equal(scores.iou, per_class, rtol=1e-6)  # torchmetrics divides in float32
    if scores.miou_classes:
        assert scores.miou == pytest.approx(float(np.nanmean(per_class)), rel=1e-6)


@settings(max_examples=80, deadline=None)
@given(batches(), st.sampled_from([np.int64, np.int32, np.uint16]))
def test_byte_fast_path_equals_general_path(case, dtype) -> None:
    k, target, pred = case
    fast, general = ConfusionMatrix(k), ConfusionMatrix(k)
    fast.update(target, pred)
    general.update(target.astype(dtype), pred.astype(dtype))
    assert fast == general


@settings(max_examples=60, deadline=None)
@given(batches())
def test_device_path_equals_numpy(case) -> None:
    """The accelerator code (fixed bins, index_add_) gives the numpy counts; run on CPU."""
    k, target, pred = case
    on_host, on_device = ConfusionMatrix(k), ConfusionMatrix(k)
    on_host.update(target, pred)
    on_device._update_device(torch.from_numpy(target), torch.from_numpy(pred), "cpu")
    assert on_device._device_bins is not None
    assert on_device == on_host


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_update_counts_on_device_and_checks_when_read() -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 4, (2, 33, 17)).astype(np.uint8)
    target[0, :3] = IGNORE
    pred = rng.integers(0, 4, target.shape).astype(np.uint8)
    on_host, on_device = ConfusionMatrix(4), ConfusionMatrix(4)
    on_host.update(target, pred)
    on_device.update(torch.from_numpy(target).cuda(), torch.from_numpy(pred).cuda().long())
    assert on_device._device_bins is not None and on_device._device_bins.is_cuda
    assert on_device == on_host
    bad = ConfusionMatrix(4)
    bad.update(torch.from_numpy(target).cuda(), torch.full(target.shape, 9).cuda())
    with pytest.raises(ValueError, match="predicted pixel"):
        bad.matrix  # noqa: B018


def test_hand_built_matrix() -> None:
    target = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    cm = ConfusionMatrix(4)
    cm.update(target, pred)
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    s = cm.scores()
    assert s.iou[:3] == (0.5, 1 / 3, 0.5)
    assert math.isnan(s.iou[3]) and math.isnan(s.recall[3]) and math.isnan(s.precision[3])
    assert s.miou == pytest.approx((0.5 + 1 / 3 + 0.5) / 3) and s.miou_classes == 3
    assert s.aacc == pytest.approx(3 / 5)
    assert s.fwiou == pytest.approx((2 * 0.5 + 2 / 3 + 0.5) / 5)
    fg = cm.scores(exclude_background=True)
    assert fg.classes == (1, 2, 3) and fg.miou == pytest.approx((1 / 3 + 0.5) / 2)
    assert fg.aacc == s.aacc  # aAcc always covers every scored pixel
    sub = cm.scores(classes=[2, 3])
    assert sub.miou == 0.5 and sub.miou_classes == 1 and sub.fwiou == 0.5


def test_class_predicted_but_absent_from_ground_truth_scores_zero_iou() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1]), np.array([0, 2, 1]))
    s = cm.scores()
    assert s.iou[2] == 0.0 and math.isnan(s.recall[2]) and s.precision[2] == 0.0
    assert s.macc_classes == 2 and s.miou_classes == 3


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_invalid_ids_raise_and_count_nothing(dtype) -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"1 predicted pixel\(s\) hold ids outside 0..2"):
        cm.update(np.array([0, 1, 2], dtype), np.array([0, 3, 2], dtype))
    with pytest.raises(ValueError, match=r"1 target pixel\(s\) hold ids outside 0..2 or 255"):
        cm.update(np.array([0, 7, 2], dtype), np.array([0, 1, 2], dtype))
    assert cm.matrix.sum() == 0
    # A prediction at an ignored pixel is not scored, so not checked.
    cm.update(np.array([255, 1], dtype), np.array([200, 1], dtype))
    assert cm.matrix.sum() == 1 and cm.ignored_pixels == 1


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="is a class id"):
        ConfusionMatrix(3, ignore_index=1)
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="argmax"):
        cm.update(np.zeros(3, np.uint8), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="argmax"):
        cm.update(torch.zeros(3, dtype=torch.uint8), torch.zeros(3))
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        pixel_scores(np.eye(3, dtype=np.int64), classes=[5])


def test_no_ignore_index_scores_every_pixel() -> None:
    cm = ConfusionMatrix(2, ignore_index=None)
    with pytest.raises(ValueError, match="target pixel"):
        cm.update(np.array([0, 255], np.uint8), np.array([0, 1], np.uint8))


def test_add_reset_and_json_round_trip() -> None:
    rng = np.random.default_rng(0)
    a, b, both = ConfusionMatrix(5), ConfusionMatrix(5), ConfusionMatrix(5)
    t1, p1 = rng.integers(0, 5, (4, 9)).astype(np.uint8), rng.integers(0, 5, (4, 9))
    t2, p2 = rng.integers(0, 5, (3, 9)).astype(np.uint8), rng.integers(0, 5, (3, 9))
    t1[0, 0] = IGNORE
    a.update(t1, p1)
    b.update(t2, p2)
    both.update(t1, p1)
    both.update(t2, p2)
    assert a + b == both
    restored = ConfusionMatrix.from_dict(json.loads(json.dumps(both.to_dict())))
    assert restored == both and restored.ignored_pixels == 1
    with pytest.raises(ValueError, match="cannot combine"):
        _ = a + ConfusionMatrix(4)
    a.reset()
    assert a.matrix.sum() == 0 and a.ignored_pixels == 0


@pytest.mark.parametrize(
    "data",
    [
        {"num_classes": 2, "matrix": [[1, 2]]},
        {"num_classes": 2, "matrix": [[1, -2], [0, 0]]},
        {"num_classes": 2, "matrix": [[1, 2.5], [0, 0]]},
        {"num_classes": 0, "matrix": []},
        {"num_classes": 2, "matrix": [[1, 2], [0, 0]], "ignored_pixels": -1},
    ],
)
def test_from_dict_rejects_malformed(data) -> None:
    with pytest.raises(ValueError):
        ConfusionMatrix.from_dict(data)


def test_all_reduce_without_process_group_is_a_no_op() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1]), np.array([1, 1]))
    assert cm.all_reduce() is cm and cm.matrix.tolist() == [[0, 1], [0, 1]]


_ALL_REDUCE_RANK = """
import json, sys
import numpy as np
import torch.distributed as dist
from segkit.metrics import ConfusionMatrix

rank = int(sys.argv[2])
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=rank, world_size=2)
cm = ConfusionMatrix(3)
cm.update(np.full(4, rank, np.uint8), np.full(4, 2, np.uint8))
cm.update(np.array([255], np.uint8), np.array([0], np.uint8))
cm.all_reduce()
print(json.dumps([cm.matrix.tolist(), cm.ignored_pixels]))
dist.destroy_process_group()
"""


def test_all_reduce_sums_across_ranks(tmp_path) -> None:
    """Two gloo ranks in two plain processes (spawn would re-import this test module)."""
    init = str(tmp_path / "init")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ALL_REDUCE_RANK, init, str(rank)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    expected = [[[0, 0, 4], [0, 0, 4], [0, 0, 0]], 2]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out) == expected


# -- object-level --------------------------------------------------------------------


def _brute_force_match(iou: np.ndarray, threshold: float) -> tuple[float, int]:
    """Best (summed IoU, pairs) over every one-to-one assignment of pairs >= threshold."""
    g, p = iou.shape
    best = (0.0, 0)
    for chosen in itertools.permutations(range(max(g, p)), g) if g <= p else []:
        pairs = [(r, c) for r, c in enumerate(chosen) if c < p and iou[r, c] >= threshold]
        total = sum(iou[r, c] for r, c in pairs)
        if total > best[0] + 1e-12:
            best = (total, len(pairs))
    if g > p:
        return _brute_force_match(iou.T, threshold)
    return best


@settings(max_examples=80, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(0, 4), st.integers(0, 4)),
        elements=st.sampled_from([0.0, 0.2, 0.5, 0.55, 0.7, 0.9, 1.0]),
    )
)
def test_match_objects_equals_brute_force(iou: np.ndarray) -> None:
    pairs = match_objects(iou, 0.5)
    assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs})
    total = sum(iou[r, c] for r, c in pairs)
    expected_total, _ = _brute_force_match(iou, 0.5)
    assert total == pytest.approx(expected_total)
    assert all(iou[r, c] >= 0.5 for r, c in pairs)


def test_two_touching_objects_predicted_as_one_is_one_merge() -> None:
    gt_class = np.zeros((6, 10), np.uint8)
    gt_inst = np.zeros((6, 10), np.uint8)
    gt_class[1:5, 1:5] = gt_class[1:5, 5:9] = 1
    gt_inst[1:5, 1:5], gt_inst[1:5, 5:9] = 1, 2
    counts = ObjectCounts(2)
    counts.update(gt_class, gt_inst, gt_class.copy())  # class right, objects fused
    s = counts.scores()
    assert (s.gt_objects[1], s.pred_objects[1], s.merges[1], s.splits[1]) == (2, 1, 1, 0)
    assert s.matched[1] == 1  # IoU 16/32 = 0.5 with one of the two
    # Predicting the touching line as background separates them: two exact matches.
    separated = gt_class.copy()
    separated[:, 5] = 0
    counts = ObjectCounts(2)
    counts.update(gt_class, gt_inst, separated)
    s = counts.scores()
    assert (s.pred_objects[1], s.merges[1], s.matched[1]) == (2, 0, 2)  # 12/16, 16/16
    ideal = ObjectCounts(2)
    ideal.update(gt_class, gt_inst, gt_class, pred_instance=gt_inst)
    s = ideal.scores()
    assert s.f1[1] == 1.0 and s.ap[1] == 1.0 and s.merges[1] == 0


def test_one_object_predicted_as_two_is_one_split() -> None:
    gt_class = np.zeros((5, 9), np.uint8)
    gt_class[1:4, 1:8] = 1
    gt_inst = gt_class.copy()
    pred = gt_class.copy()
    pred[:, 4] = 0
    counts = ObjectCounts(2)
    images = counts.update(gt_class, gt_inst, pred)
    s = counts.scores()
    assert (s.gt_objects[1], s.pred_objects[1], s.splits[1], s.merges[1]) == (1, 2, 1, 0)
    assert s.matched[1] == 0 and s.precision[1] == 0.0 and s.recall[1] == 0.0
    assert images[1].splits == 1


def test_ignored_pixels_and_background_are_not_objects() -> None:
    gt_class = np.full((4, 4), 255, np.uint8)
    gt_class[0, 0] = 0
    gt_inst = np.full((4, 4), 255, np.uint8)
    pred = np.ones((4, 4), np.uint8)
    pred[0, 0] = 0
    counts = ObjectCounts(2)
    counts.update(gt_class, gt_inst, pred)  # the predicted object lies on ignore only
    s = counts.scores()
    assert s.gt_objects[1] == s.pred_objects[1] == 0 and math.isnan(s.ap[1])


def _reference_object_counts(gt_class, gt_inst, pred, k, thresholds):
    """Brute force: boolean masks per object, IoU by counting, brute-force matching."""
    from skimage.measure import label

    valid = gt_class != IGNORE
    out = {}
    for c in range(1, k):
        gts = []
        for i in np.unique(gt_inst):
            if i in (0, 255):
                continue
            m = (gt_inst == i) & valid
            if m.any() and np.bincount(gt_class[m], minlength=k)[:k].argmax() == c:
                gts.append(m)
        lab = label(pred == c, connectivity=2)
        preds = [(lab == j) & valid for j in range(1, lab.max() + 1)]
        preds = [m for m in preds if m.any()]
        iou = np.array([[(a & b).sum() / (a | b).sum() for b in preds] for a in gts])
        iou = iou.reshape(len(gts), len(preds))
        matched = []
        for t in thresholds:
            _, n = _brute_force_match(iou, t) if iou.size else (0, 0)
            matched.append(n)
        merges = sum(sum(2 * (a & b).sum() > a.sum() for a in gts) >= 2 for b in preds)
        splits = sum(sum(2 * (a & b).sum() > b.sum() for b in preds) >= 2 for a in gts)
        out[c] = (len(gts), len(preds), matched, merges, splits)
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_object_counts_equal_brute_force(data) -> None:
    k = data.draw(st.integers(2, 3))
    shape = (data.draw(st.integers(2, 8)), data.draw(st.integers(2, 8)))
    gt_inst = data.draw(arrays(np.uint8, shape, elements=st.sampled_from([0, 1, 2, 3, 255])))
    inst_class = data.draw(st.lists(st.integers(1, k - 1), min_size=4, max_size=4))
    gt_class = np.where(gt_inst == 255, 255, np.array([0, *inst_class[1:]])[gt_inst % 4])
    gt_class = gt_class.astype(np.uint8)
    pred = data.draw(arrays(np.uint8, shape, elements=st.integers(0, k - 1)))
    counts = ObjectCounts(k, thresholds=(0.5, 0.75))
    counts.update(gt_class, gt_inst, pred)
    expected = _reference_object_counts(gt_class, gt_inst, pred, k, (0.5, 0.75))
    for c in range(1, k):
        n_gt, n_pred, matched, merges, splits = expected[c]
        assert counts.gt[c] == n_gt and counts.pred[c] == n_pred
        assert counts.matched[c].tolist() == matched
        assert (counts.merges[c], counts.splits[c]) == (merges, splits)


def test_object_scores_formulas_and_round_trip() -> None:
    counts = ObjectCounts(3, thresholds=(0.5, 0.9))
    counts.gt[1], counts.pred[1] = 4, 2
    counts.matched[1] = [2, 1]
    s = counts.scores()
    assert s.precision[1] == 1.0 and s.recall[1] == 0.5 and s.f1[1] == pytest.approx(2 / 3)
    assert s.ap[1] == pytest.approx((2 / 4 + 1 / 5) / 2)  # TP / (TP + FP + FN)
    assert math.isnan(s.ap[2]) and s.pooled["gt_objects"] == 4
    restored = ObjectCounts.from_dict(json.loads(json.dumps(counts.to_dict())))
    assert restored.scores() == s or restored.scores().to_dict() == s.to_dict()
    both = counts + restored
    assert both.gt[1] == 8 and both.matched[1].tolist() == [4, 2]
    json.dumps(s.to_dict(), allow_nan=False)
    with pytest.raises(ValueError):
        ObjectCounts.from_dict({"num_classes": 3})


def test_default_thresholds_are_the_dsb_ones() -> None:
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_connected_objects_connectivity() -> None:
    pred = np.array([[1, 0], [0, 1]], np.uint8)
    assert connected_objects(pred, 2, connectivity=2)[1].tolist() == [1]
    objects, classes = connected_objects(pred, 2, connectivity=1)
    assert classes.tolist() == [1, 1] and objects.max() == 2


@settings(max_examples=80, deadline=None)
@given(
    arrays(np.uint8, st.integers(1, 300), elements=st.sampled_from([0, 1, 2, 7, 255])),
    arrays(np.uint8, st.integers(1, 300), elements=st.sampled_from([0, 1, 3, 200])),
)
def test_run_counting_equals_pixel_counting(target, prediction) -> None:
    n = min(target.size, prediction.size)
    target, prediction = np.sort(target[:n]), prediction[:n]  # sorted: long runs
    runs = _count_runs(target, prediction)
    pixels = _count_pixels(target, prediction)
    assert runs.dtype == np.int64 and np.array_equal(runs, pixels)


@pytest.mark.parametrize("noise", [0.0, 0.02, 1.0])
def test_large_masks_over_several_chunks_both_counting_paths(noise) -> None:
    """Masks of 400×500 (two counting chunks): blocks of classes with some noise."""
    rng = np.random.default_rng(3)
    target = np.kron(rng.integers(0, 6, (40, 50)), np.ones((10, 10), np.int64))
    prediction = np.roll(target, 3, axis=1)
    flip = rng.random(target.shape) < noise
    prediction[flip] = rng.integers(0, 6, int(flip.sum()))
    target[:5] = 255
    fast, general = ConfusionMatrix(6), ConfusionMatrix(6)
    fast.update(target.astype(np.uint8), prediction.astype(np.uint8))
    general.update(target, prediction)
    assert fast == general and fast.ignored_pixels == 5 * 500
