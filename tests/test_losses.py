"""Losses against PyTorch references, ignore handling, spec parsing, deep supervision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.errors import OptionError
from segkit.losses import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    DeepSupervisionLoss,
    DiceLoss,
    FocalLoss,
    build_loss,
    parse_loss_spec,
    pos_weight_from_counts,
)

IGNORE = 255


@st.composite
def batches(draw: st.DrawFn, min_classes: int = 2, max_classes: int = 6) -> tuple:
    """(logits, target with some ignore pixels, class_weights, weight_map), seeded."""
    n = draw(st.integers(1, 3))
    c = draw(st.integers(min_classes, max_classes))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    ignore_fraction = draw(st.sampled_from([0.0, 0.3, 0.9]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, c, h, w, generator=g)
    labels = max(c, 2)
    target = torch.randint(0, labels, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < ignore_fraction] = IGNORE
    class_weights = 0.1 + torch.rand(labels, generator=g) * 3
    weight_map = 0.5 + torch.rand(n, h, w, generator=g) * 10
    return logits, target, class_weights, weight_map


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.double(), expected.double(), rtol=1e-5, atol=1e-6)


# --- cross-entropy -----------------------------------------------------------------------------


@given(batches())
@settings(max_examples=60, deadline=None)
def test_ce_equals_torch_with_class_weights_and_unit_weight_map(batch: tuple) -> None:
    logits, target, class_weights, _ = batch
    if not (target != IGNORE).any():
        return  # F.cross_entropy returns NaN here; covered by the all-ignore test
    expected = F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE)
    loss = CrossEntropyLoss(class_weights=class_weights)
    _close(loss(logits, target), expected)
    _close(loss(logits, target, torch.ones(target.shape)), expected)
    _close(CrossEntropyLoss()(logits, target), F.cross_entropy(logits, target, ignore_index=255))


@given(batches())
@settings(max_examples=60, deadline=None)
def test_ce_weight_map_normalises_by_summed_weights(batch: tuple) -> None:
    logits, target, class_weights, weight_map = batch
    valid = target != IGNORE
    if not valid.any():
        return
    safe = target.clamp_max(logits.shape[1] - 1)
    per_pixel = F.cross_entropy(logits, safe, reduction="none")
    w = class_weights[safe] * weight_map * valid
    expected = (w * per_pixel).sum() / w.sum()
    loss = CrossEntropyLoss(class_weights=class_weights)
    _close(loss(logits, target, weight_map), expected)
    # Normalisation by the summed weights makes a global scale of the map irrelevant.
    _close(loss(logits, target, 7.5 * weight_map), expected)


def test_ce_hand_computed_example() -> None:
    # Two pixels, 2 classes, logits (0, 0) -> each pixel loses log 2.
    logits = torch.zeros(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, IGNORE]]])
    weight_map = torch.tensor([[[1.0, 3.0, 100.0]]])
    loss = CrossEntropyLoss(class_weights=[2.0, 1.0])(logits, target, weight_map)
    # (2·1·log2 + 1·3·log2) / (2·1 + 1·3) = log 2; the ignored pixel's weight 100 is unused.
    _close(loss, torch.tensor(0.6931471805599453))
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])  # pixel 0 is confident in class 0
    loss = CrossEntropyLoss()(logits, torch.tensor([[[0, 1]]]), torch.tensor([[[1.0, 3.0]]]))
    expected = (F.softplus(torch.tensor(-2.0)) + 3 * torch.log(torch.tensor(2.0))) / 4
    _close(loss, expected)


# --- binary cross-entropy --------------------------------------------------------------------


@given(batches(min_classes=1, max_classes=1), st.sampled_from([None, 0.2, 1.0, 9.0]))
@settings(max_examples=60, deadline=None)
def test_bce_equals_torch_with_pos_weight(batch: tuple, pos_weight: float | None) -> None:
    logits, target, _, _ = batch
    valid = target != IGNORE
    if not valid.any():
        return
    z = logits[:, 0][valid]
    y = target[valid].float()
    expected = F.binary_cross_entropy_with_logits(
        z, y, pos_weight=None if pos_weight is None else torch.tensor(pos_weight)
    )
    loss = BCEWithLogitsLoss(pos_weight=pos_weight)
    _close(loss(logits, target), expected)
    _close(loss(logits, target, torch.ones(target.shape)), expected)


def test_bce_is_stable_for_large_logits() -> None:
    logits = torch.tensor([[[[200.0, -200.0]]]], requires_grad=True)
    loss = BCEWithLogitsLoss()(logits, torch.tensor([[[0, 1]]]))
    loss.backward()
    _close(loss, torch.tensor(200.0))
    assert torch.isfinite(logits.grad).all()


def test_pos_weight_from_counts() -> None:
    assert pos_weight_from_counts(900, 100) == 9.0
    with pytest.raises(ValueError, match="positives > 0"):
        pos_weight_from_counts(10, 0)


# --- focal -------------------------------------------------------------------------------------


@given(batches())
@settings(max_examples=60, deadline=None)
def test_focal_with_gamma_0_equals_ce(batch: tuple) -> None:
    logits, target, class_weights, weight_map = batch
    focal = FocalLoss(gamma=0.0, class_weights=class_weights)
    ce = CrossEntropyLoss(class_weights=class_weights)
    _close(focal(logits, target, weight_map), ce(logits, target, weight_map))


@given(batches(min_classes=1, max_classes=1))
@settings(max_examples=40, deadline=None)
def test_binary_focal_with_gamma_0_equals_bce(batch: tuple) -> None:
    logits, target, _, weight_map = batch
    _close(
        FocalLoss(gamma=0.0)(logits, target, weight_map),
        BCEWithLogitsLoss()(logits, target, weight_map),
    )


@given(batches(min_classes=1, max_classes=1), st.sampled_from([0.5, 2.0, 3.0]))
@settings(max_examples=40, deadline=None)
def test_binary_focal_matches_the_paper_formula(batch: tuple, gamma: float) -> None:
    logits, target, _, _ = batch
    valid = target != IGNORE
    if not valid.any():
        return
    alpha = 0.25
    p = torch.sigmoid(logits[:, 0].double())[valid]
    y = target[valid].double()
    expected = (
        -alpha * y * (1 - p) ** gamma * torch.log(p)
        - (1 - alpha) * (1 - y) * p**gamma * torch.log(1 - p)
    ).mean()
    _close(FocalLoss(gamma=gamma, alpha=alpha)(logits, target), expected)


@given(batches(), st.sampled_from([0.5, 2.0]), st.sampled_from([None, 0.25]))
@settings(max_examples=40, deadline=None)
def test_multiclass_focal_matches_formula(batch: tuple, gamma: float, alpha: float | None) -> None:
    logits, target, class_weights, weight_map = batch
    valid = target != IGNORE
    if not valid.any():
        return
    safe = target.clamp_max(logits.shape[1] - 1)
    pt = torch.softmax(logits.double(), 1).gather(1, safe.unsqueeze(1)).squeeze(1)
    w = class_weights.double()[safe] * weight_map.double() * valid
    a = 1.0 if alpha is None else torch.where(safe > 0, alpha, 1 - alpha).double()
    expected = (w * a * -((1 - pt) ** gamma) * torch.log(pt)).sum() / w.sum()
    loss = FocalLoss(gamma=gamma, alpha=alpha, class_weights=class_weights)
    _close(loss(logits, target, weight_map), expected)


def test_focal_down_weights_easy_pixels() -> None:
    easy = torch.tensor([[[[4.0]], [[0.0]]]])
    hard = torch.tensor([[[[0.5]], [[0.0]]]])
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    ratio_ce = CrossEntropyLoss()(easy, target) / CrossEntropyLoss()(hard, target)
    ratio_focal = FocalLoss(gamma=2)(easy, target) / FocalLoss(gamma=2)(hard, target)
    assert ratio_focal < 0.1 * ratio_ce


def test_focal_gradient_is_finite_for_confident_pixels() -> None:
    logits = torch.tensor([[[[60.0]], [[-60.0]]]], requires_grad=True)
    FocalLoss(gamma=0.5)(logits, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all()


# --- dice ---------------------------------------------------------------------------------------


def _dice_reference(
    logits: torch.Tensor, target: torch.Tensor, smooth: float, exclude_background: bool
) -> torch.Tensor:
    valid = target != IGNORE
    c = logits.shape[1]
    probs = torch.softmax(logits.double(), 1).permute(1, 0, 2, 3)[:, valid]  # [C, P]
    scores = []
    for k in range(1 if exclude_background else 0, c):
        truth = (target[valid] == k).double()
        inter = (probs[k] * truth).sum()
        scores.append((2 * inter + smooth) / (probs[k].sum() + truth.sum() + smooth))
    return 1 - torch.stack(scores).mean()


@given(batches(), st.sampled_from([0.0, 1.0]), st.booleans())
@settings(max_examples=60, deadline=None)
def test_dice_matches_reference(batch: tuple, smooth: float, exclude_background: bool) -> None:
    logits, target, _, weight_map = batch
    if not (target != IGNORE).any():
        return
    loss = DiceLoss(smooth=smooth, exclude_background=exclude_background)
    expected = _dice_reference(logits, target, smooth, exclude_background)
    _close(loss(logits, target), expected)
    _close(loss(logits, target, weight_map), expected)  # weight maps do not apply to Dice


def test_dice_perfect_and_binary() -> None:
    target = torch.tensor([[[0, 1], [2, IGNORE]]])
    perfect = 50 * F.one_hot(target.clamp_max(2), 3).permute(0, 3, 1, 2).float()
    assert DiceLoss(smooth=0)(perfect, target) < 1e-6
    wrong = perfect.roll(1, dims=1)
    assert DiceLoss(smooth=0)(wrong, target) > 0.99
    binary_target = torch.tensor([[[0, 1, 1, IGNORE]]])
    logits = torch.tensor([[[[-50.0, 50.0, 50.0, -50.0]]]])
    assert DiceLoss(smooth=0)(logits, binary_target) < 1e-6
    assert DiceLoss(smooth=0)(-logits, binary_target) > 0.99


# --- ignore index, all-ignore batches, autocast ---------------------------------------------------

ALL_SPECS = ["ce", "focal", "focal:alpha=0.25", "dice", "dice:smooth=0", "ce+dice"]
BINARY_SPECS = ["bce", "bce:pos_weight=3", "focal:alpha=0.25", "dice:smooth=0"]


def _spec_cases() -> list[tuple[str, int]]:
    return [(spec, 4) for spec in ALL_SPECS] + [(spec, 1) for spec in BINARY_SPECS]


@pytest.mark.parametrize("spec,classes", _spec_cases())
def test_ignored_pixels_have_zero_gradient_and_no_influence(spec: str, classes: int) -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, classes, 6, 7, generator=g, requires_grad=True)
    target = torch.randint(0, max(classes, 2), (2, 6, 7), generator=g)
    ignore = torch.rand(2, 6, 7, generator=g) < 0.4
    target[ignore] = IGNORE
    weights = [1.0, 2.0, 0.5, 3.0][: max(classes, 2)] if not spec.startswith("dice") else None
    loss_fn = build_loss(spec, class_weights=weights)
    loss = loss_fn(logits, target, torch.rand(2, 6, 7, generator=g) + 0.5)
    loss.backward()
    assert torch.isfinite(loss)
    assert (logits.grad.permute(0, 2, 3, 1)[ignore] == 0).all()
    assert (logits.grad.permute(0, 2, 3, 1)[~ignore] != 0).any()
    # Whatever the network says on ignored pixels, the loss is the same.
    changed = logits.detach().clone()
    changed.permute(0, 2, 3, 1)[ignore] = 100.0
    torch.manual_seed(0)
    _close(loss_fn(changed, target, None), loss_fn(logits.detach(), target, None))


@pytest.mark.parametrize("spec,classes", _spec_cases())
def test_all_ignore_batch_gives_zero_not_nan(spec: str, classes: int) -> None:
    logits = torch.randn(2, classes, 5, 5, requires_grad=True)
    target = torch.full((2, 5, 5), IGNORE)
    loss = build_loss(spec)(logits, target, torch.rand(2, 5, 5))
    loss.backward()
    assert loss.item() == 0.0
    assert (logits.grad == 0).all()


@pytest.mark.parametrize("spec,classes", _spec_cases())
def test_loss_runs_in_fp32_under_bf16_autocast(spec: str, classes: int) -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, classes, 8, 8, generator=g).bfloat16()
    target = torch.randint(0, max(classes, 2), (2, 8, 8), generator=g)
    loss_fn = build_loss(spec)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(logits, target)
    assert loss.dtype == torch.float32
    # Same value as computing on the (exactly representable) fp32 copy of the logits.
    torch.testing.assert_close(loss, loss_fn(logits.float(), target), rtol=1e-6, atol=1e-6)


# --- input validation ------------------------------------------------------------------------------


def test_input_errors_are_clear() -> None:
    logits = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        CrossEntropyLoss()(logits, torch.full((1, 4, 4), 3))
    with pytest.raises(ValueError, match=r"target must be \[N, H, W\]"):
        CrossEntropyLoss()(logits, torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class ids"):
        CrossEntropyLoss()(logits, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="weight_map"):
        CrossEntropyLoss()(logits, torch.zeros(1, 4, 4, dtype=torch.long), torch.ones(4, 4))
    with pytest.raises(ValueError, match="2 class weights given for 3 classes"):
        CrossEntropyLoss(class_weights=[1, 2])(logits, torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="use bce"):
        CrossEntropyLoss()(torch.randn(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="use ce"):
        BCEWithLogitsLoss()(logits, torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 0"):
        CrossEntropyLoss(class_weights=[1.0, -1.0])


# --- spec strings ------------------------------------------------------------------------------------


def test_parse_loss_spec() -> None:
    terms = parse_loss_spec("focal:gamma=2+dice")
    assert [(t.weight, t.name, t.params) for t in terms] == [
        (1.0, "focal", {"gamma": 2.0}),
        (1.0, "dice", {}),
    ]
    terms = parse_loss_spec(" CE + 0.5*dice:exclude_background=true,smooth=1e-5 ")
    assert [(t.weight, t.name, t.params) for t in terms] == [
        (1.0, "ce", {}),
        (0.5, "dice", {"exclude_background": True, "smooth": 1e-5}),
    ]
    assert parse_loss_spec("bce:pos_weight=1e+3")[0].params == {"pos_weight": 1000.0}
    assert parse_loss_spec("focal:alpha=none")[0].params == {"alpha": None}


@given(
    st.lists(
        st.tuples(
            st.floats(1e-6, 1e6),
            st.sampled_from(["{!r}", "{:e}", "{:E}", "{:.3g}"]),  # 1.5e+03, 1.5E-05
            st.sampled_from(["ce", "dice", "focal:gamma=2e+0", "dice:smooth=1E-5"]),
        ),
        min_size=1,
        max_size=4,
    )
)
@settings(max_examples=150, deadline=None)
def test_loss_spec_weights_in_any_float_notation(terms: list) -> None:
    spec = "+".join(f"{fmt.format(w)}*{term}" for w, fmt, term in terms)
    parsed = parse_loss_spec(spec)
    assert [t.name for t in parsed] == [term.split(":")[0] for _, _, term in terms]
    for (weight, fmt, _), term in zip(terms, parsed, strict=True):
        assert term.weight == float(fmt.format(weight))


@pytest.mark.parametrize(
    "spec,message",
    [
        ("", "empty loss spec"),
        ("ce+lovasz", r"unknown loss 'lovasz'; choose from ce, bce, focal, dice"),
        ("focal:gama=2", r"focal has no parameter 'gama'; parameters: gamma, alpha"),
        ("ce:gamma=2", r"ce has no parameter 'gamma'; parameters: none"),
        ("focal:gamma", r"needs =value"),
        ("focal:gamma=two", r"focal\.gamma: value 'two' is not a number"),
        ("focal:gamma=1,gamma=2", "given twice"),
        ("ce+", "cannot read term"),
        ("0*ce", "term weight must be > 0"),
        ("focal:gamma=-1", "gamma must be a finite number >= 0"),
        ("dice:smooth=-1", "smooth must be"),
        ("focal:alpha=2", r"alpha must be in \[0, 1\]"),
    ],
)
def test_bad_specs_raise_option_errors(spec: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        build_loss(spec)


def test_combined_spec_is_the_weighted_sum() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 6, 6, generator=g)
    target = torch.randint(0, 3, (2, 6, 6), generator=g)
    weights = [0.5, 1.0, 2.0]
    combined = build_loss("focal:gamma=1+0.5*dice:exclude_background=true", class_weights=weights)
    expected = FocalLoss(gamma=1, class_weights=weights)(logits, target) + 0.5 * DiceLoss(
        exclude_background=True
    )(logits, target)
    _close(combined(logits, target), expected)


# --- deep supervision ---------------------------------------------------------------------------------


def test_deep_supervision_averages_heads() -> None:
    g = torch.Generator().manual_seed(2)
    heads = [torch.randn(2, 3, 5, 5, generator=g) for _ in range(4)]
    target = torch.randint(0, 3, (2, 5, 5), generator=g)
    ce = CrossEntropyLoss()
    per_head = torch.stack([ce(h, target) for h in heads])
    _close(DeepSupervisionLoss(ce)(heads, target), per_head.mean())
    weighted = DeepSupervisionLoss(ce, weights=[0.1, 0.2, 0.3, 0.4])(heads, target)
    _close(weighted, (per_head * torch.tensor([0.1, 0.2, 0.3, 0.4])).sum())
    _close(DeepSupervisionLoss(ce)(heads[0], target), per_head[0])
    loss = build_loss("ce", deep_supervision_weights=[1, 1, 1, 5])
    _close(loss(heads, target), (per_head[:3].sum() + 5 * per_head[3]) / 8)
    with pytest.raises(ValueError, match="4 deep-supervision outputs but 2 weights"):
        DeepSupervisionLoss(ce, weights=[1, 1])(heads, target)
    with pytest.raises(OptionError, match="positive sum"):
        build_loss("ce", deep_supervision_weights=[0, 0])
