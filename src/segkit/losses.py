"""Segmentation losses that respect the ignore label, class weights and per-pixel weight maps.

Every loss is an ``nn.Module`` called as ``loss(logits, target, weight_map=None)``:

* ``logits``: ``[N, C, H, W]`` float (any dtype; cast to float32 first, so bf16/fp16
  autocast never degrades the loss). ``C == 1`` means a binary (sigmoid) head.
* ``target``: ``[N, H, W]`` int64 class ids; ``ignore_index`` (255) pixels are left out
  of the loss, its normalisation and its gradient.
* ``weight_map``: optional ``[N, H, W]`` non-negative per-pixel weights (the U-Net
  border weights written by ``segkit weights``).

A batch with no valid pixel gives a loss of exactly 0 (never NaN) and zero gradients.

Losses are built from spec strings by :func:`build_loss`, e.g. ``"ce"``, ``"ce+dice"``,
``"focal:gamma=2+0.5*dice:exclude_background=true"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segkit.errors import OptionError
from segkit.voc import IGNORE_INDEX

__all__ = [
    "IGNORE_INDEX",
    "LOSS_NAMES",
    "BCEWithLogitsLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceLoss",
    "FocalLoss",
    "build_loss",
    "parse_loss_spec",
    "pos_weight_from_counts",
]


def _check_inputs(logits: Tensor, target: Tensor, weight_map: Tensor | None) -> None:
    if logits.ndim != 4:
        raise ValueError(f"logits must be [N, C, H, W]; got shape {tuple(logits.shape)}")
    expected = (logits.shape[0], *logits.shape[2:])
    if target.shape != expected:
        raise ValueError(
            f"target must be [N, H, W] = {list(expected)} to match logits; got {list(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class ids; got dtype {target.dtype}")
    if weight_map is not None and weight_map.shape != expected:
        raise ValueError(
            f"weight_map must be [N, H, W] = {list(expected)}; got {list(weight_map.shape)}"
        )


def _valid_and_safe_target(
    target: Tensor, num_classes: int, ignore_index: int
) -> tuple[Tensor, Tensor]:
    """Mask of non-ignored pixels and a target whose ignored pixels read class 0."""
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        found = sorted(set(target[bad].unique().tolist()))[:10]
        raise ValueError(
            f"target holds class ids {found} outside 0..{num_classes - 1} "
            f"(and not the ignore index {ignore_index})"
        )
    return valid, torch.where(valid, target, torch.zeros_like(target)).long()


def _pixel_weights(
    valid: Tensor, target: Tensor, class_weights: Tensor | None, weight_map: Tensor | None
) -> Tensor:
    """float32 weight of every pixel: class weight × weight map, 0 where ignored."""
    weights = valid.float()
    if class_weights is not None:
        weights = weights * class_weights.to(weights.device)[target]
    if weight_map is not None:
        weights = weights * weight_map.float()
    return weights


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    # Sum of weights is 0 only when its numerator is 0 too (all ignored): 0 / tiny = 0.
    return (values * weights).sum() / weights.sum().clamp_min(torch.finfo(torch.float32).tiny)


def _as_class_weights(class_weights: Sequence[float] | Tensor | None) -> Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
    if weights.numel() == 0 or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"class weights must be finite and >= 0; got {weights.tolist()}")
    return weights


class _PixelLoss(nn.Module):
    """Shared constructor: class weights (a buffer, so ``.to(device)`` moves them)."""

    class_weights: Tensor | None

    def __init__(
        self,
        *,
        class_weights: Sequence[float] | Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", _as_class_weights(class_weights), persistent=False)

    def _check_class_weights(self, num_classes: int) -> None:
        if self.class_weights is not None and self.class_weights.numel() != num_classes:
            raise ValueError(
                f"{self.class_weights.numel()} class weights given for {num_classes} classes"
            )


class CrossEntropyLoss(_PixelLoss):
    """Softmax cross-entropy with class weights, a per-pixel weight map and ignore index.

    With ``w_i = class_weight[t_i] · weight_map_i`` over the non-ignored pixels i::

        loss = Σ_i w_i · (−log softmax(z_i)[t_i]) / Σ_i w_i

    i.e. normalised by the summed weights of the valid pixels, exactly as
    ``F.cross_entropy(weight=..., ignore_index=255, reduction="mean")`` does for class
    weights, extended to weight maps. With an all-ones weight map it equals
    ``F.cross_entropy``. Needs ``C >= 2`` (use ``bce`` for a single-logit head).
    """

    def forward(self, logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        _check_inputs(logits, target, weight_map)
        num_classes = logits.shape[1]
        if num_classes < 2:
            raise ValueError("ce needs at least 2 logits per pixel; use bce for a binary head")
        self._check_class_weights(num_classes)
        valid, safe = _valid_and_safe_target(target, num_classes, self.ignore_index)
        log_probs = F.log_softmax(logits.float(), dim=1)
        nll = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
        return _weighted_mean(nll, _pixel_weights(valid, safe, self.class_weights, weight_map))


def pos_weight_from_counts(negatives: int | float, positives: int | float) -> float:
    """``pos_weight = negatives / positives`` for :class:`BCEWithLogitsLoss`."""
    if positives <= 0 or negatives < 0:
        raise ValueError(
            f"pos_weight needs positives > 0 and negatives >= 0; got {negatives}/{positives}"
        )
    return float(negatives) / float(positives)


class BCEWithLogitsLoss(_PixelLoss):
    """Binary cross-entropy on a single-logit head (``C == 1``), target in {0, 1, 255}.

    ``pos_weight`` multiplies the positive term (use
    :func:`pos_weight_from_counts` for ``negatives / positives``). As in
    ``F.binary_cross_entropy_with_logits``, ``pos_weight`` stays out of the
    denominator: the loss is ``Σ w_i · l_i / Σ w_i`` with ``w_i`` the weight map (1 by
    default) over valid pixels, so with no weight map it equals PyTorch's mean.
    ``class_weights``, if given, are ``[background, foreground]`` and multiply ``w_i``.
    """

    def __init__(
        self,
        *,
        pos_weight: float | None = None,
        class_weights: Sequence[float] | Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(class_weights=class_weights, ignore_index=ignore_index)
        if pos_weight is not None and not (math.isfinite(pos_weight) and pos_weight > 0):
            raise ValueError(f"pos_weight must be a finite number > 0; got {pos_weight!r}")
        self.pos_weight = pos_weight

    def extra_repr(self) -> str:
        return f"pos_weight={self.pos_weight}"

    def forward(self, logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        _check_inputs(logits, target, weight_map)
        if logits.shape[1] != 1:
            raise ValueError(f"bce needs 1 logit per pixel; got {logits.shape[1]} (use ce)")
        self._check_class_weights(2)
        valid, safe = _valid_and_safe_target(target, 2, self.ignore_index)
        z = logits.float().squeeze(1)
        y = safe.float()
        pos_weight = 1.0 if self.pos_weight is None else self.pos_weight
        # −[p·y·log σ(z) + (1−y)·log(1−σ(z))], with log(1−σ(z)) = log σ(−z), stable for any z.
        loss = -(pos_weight * y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
        return _weighted_mean(loss, _pixel_weights(valid, safe, self.class_weights, weight_map))


class FocalLoss(_PixelLoss):
    """Focal loss (Lin et al. 2017), multi-class (softmax, ``C >= 2``) or binary (``C == 1``).

    Binary: ``−α(1−p)^γ·log p`` for positives and ``−(1−α)·p^γ·log(1−p)`` for
    negatives, p = σ(z). Multi-class: ``−α_t(1−p_t)^γ·log p_t`` with p_t the softmax
    probability of the true class; a scalar ``alpha`` weighs the foreground classes
    (1…C−1) by α and the background (class 0) by 1−α, the same split as the binary case.
    ``alpha=None`` turns the α factor off.

    Normalisation matches :class:`CrossEntropyLoss`: divided by the summed class and
    weight-map weights of valid pixels (α only scales the numerator, like ``pos_weight``).
    So ``gamma=0, alpha=None`` gives exactly cross-entropy (BCE for ``C == 1``).
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        class_weights: Sequence[float] | Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(class_weights=class_weights, ignore_index=ignore_index)
        if not (math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"gamma must be a finite number >= 0; got {gamma!r}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] or none; got {alpha!r}")
        self.gamma = float(gamma)
        self.alpha = alpha

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"

    def _modulate(self, one_minus_p: Tensor) -> Tensor:
        # Clamped so (1−p)^γ keeps a finite gradient at p == 1 when 0 < γ < 1.
        return one_minus_p.clamp_min(1e-12).pow(self.gamma)

    def forward(self, logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        _check_inputs(logits, target, weight_map)
        num_classes = logits.shape[1]
        binary = num_classes == 1
        self._check_class_weights(2 if binary else num_classes)
        valid, safe = _valid_and_safe_target(
            target, 2 if binary else num_classes, self.ignore_index
        )
        if binary:
            z = logits.float().squeeze(1)
            y = safe.float()
            alpha_pos, alpha_neg = (
                (1.0, 1.0) if self.alpha is None else (self.alpha, 1 - self.alpha)
            )
            positive = alpha_pos * self._modulate(1 - torch.sigmoid(z)) * -F.logsigmoid(z)
            negative = alpha_neg * self._modulate(torch.sigmoid(z)) * -F.logsigmoid(-z)
            loss = y * positive + (1 - y) * negative
        else:
            log_pt = F.log_softmax(logits.float(), dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
            loss = self._modulate(1 - log_pt.exp()) * -log_pt
            if self.alpha is not None:
                loss = loss * torch.where(safe > 0, self.alpha, 1 - self.alpha)
        return _weighted_mean(loss, _pixel_weights(valid, safe, self.class_weights, weight_map))


class DiceLoss(_PixelLoss):
    """Soft Dice loss, ``1 − mean_c (2·Σ p·g + s) / (Σ p + Σ g + s)``.

    p are softmax probabilities (sigmoid for ``C == 1``, where the foreground is the
    only class scored), g the one-hot target; the sums run over the whole batch and
    every valid pixel (ignored pixels count neither in p nor in g). ``smooth`` (s)
    keeps a class absent from a batch from dominating and the loss finite.
    ``exclude_background`` leaves class 0 out of the mean. Dice measures region
    overlap: class weights and weight maps do not apply to it and are ignored.
    """

    def __init__(
        self,
        *,
        smooth: float = 1.0,
        exclude_background: bool = False,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(ignore_index=ignore_index)
        if not (math.isfinite(smooth) and smooth >= 0):
            raise ValueError(f"smooth must be a finite number >= 0; got {smooth!r}")
        self.smooth = float(smooth)
        self.exclude_background = bool(exclude_background)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, exclude_background={self.exclude_background}"

    def forward(self, logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        _check_inputs(logits, target, weight_map)
        num_classes = logits.shape[1]
        binary = num_classes == 1
        valid, safe = _valid_and_safe_target(
            target, 2 if binary else num_classes, self.ignore_index
        )
        mask = valid.unsqueeze(1).float()
        if binary:
            probs = torch.sigmoid(logits.float())
            truth = safe.unsqueeze(1).float()
        else:
            probs = F.softmax(logits.float(), dim=1)
            truth = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).float()
            if self.exclude_background:
                probs, truth = probs[:, 1:], truth[:, 1:]
        probs = probs * mask
        truth = truth * mask
        dims = (0, 2, 3)
        intersection = (probs * truth).sum(dims)
        total = probs.sum(dims) + truth.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth).clamp_min(
            torch.finfo(torch.float32).tiny
        )
        # With smooth = 0 an all-ignored batch scores 0/tiny = 0; report no loss, not 1.
        has_pixels = valid.any()
        return torch.where(has_pixels, 1 - dice.mean(), dice.sum() * 0)


class CombinedLoss(nn.Module):
    """Weighted sum of losses: ``Σ_k weight_k · loss_k(logits, target, weight_map)``."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a combined loss needs at least one term")
        self.weights = [float(weight) for weight, _ in terms]
        self.terms = nn.ModuleList(loss for _, loss in terms)

    def extra_repr(self) -> str:
        return f"weights={self.weights}"

    def forward(self, logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for weight, loss in zip(self.weights, self.terms, strict=True):
            total = total + weight * loss(logits, target, weight_map)
        return total


class DeepSupervisionLoss(nn.Module):
    """Apply ``loss`` to every head of a deep-supervision model and average.

    ``outputs`` may be one logits tensor (plain model, or UNet++ in eval mode), passed
    straight to ``loss``, or a list of logits (UNet++ in training), scored as
    ``Σ_k w_k · loss(outputs[k]) / Σ_k w_k``. ``weights`` default to equal weights,
    as in the UNet++ paper; otherwise give one per head, shallowest first.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if weights is not None:
            weights = [float(w) for w in weights]
            if (
                not weights
                or any(not math.isfinite(w) or w < 0 for w in weights)
                or sum(weights) <= 0
            ):
                raise ValueError(
                    f"deep supervision weights must be >= 0 with a positive sum; got {weights}"
                )
        self.loss = loss
        self.weights = weights

    def extra_repr(self) -> str:
        return f"weights={self.weights or 'equal'}"

    def forward(
        self, outputs: Tensor | Sequence[Tensor], target: Tensor, weight_map: Tensor | None = None
    ) -> Tensor:
        if isinstance(outputs, Tensor):
            return self.loss(outputs, target, weight_map)
        heads = list(outputs)
        weights = [1.0] * len(heads) if self.weights is None else self.weights
        if len(weights) != len(heads) or not heads:
            raise ValueError(
                f"{len(heads)} deep-supervision outputs but {len(weights)} weights given"
            )
        total = sum(
            w * self.loss(head, target, weight_map) for w, head in zip(weights, heads, strict=True)
        )
        return total / sum(weights)


# ---------------------------------------------------------------------------------------
# Spec strings


@dataclass(frozen=True)
class LossTerm:
    """One parsed term of a loss spec: ``weight * name:key=value,...``."""

    weight: float
    name: str
    params: dict[str, Any]


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropyLoss,
    "bce": BCEWithLogitsLoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
}
# Parameters a spec may set; class weights and ignore index come from build_loss.
_SPEC_PARAMS: dict[str, tuple[str, ...]] = {
    "ce": (),
    "bce": ("pos_weight",),
    "focal": ("gamma", "alpha"),
    "dice": ("smooth", "exclude_background"),
}
LOSS_NAMES = tuple(_FACTORIES)
# Split on '+' only where a new term starts: not inside an exponent ("1e+3", "2E+1"),
# and only before "[weight*]name".
_TERM_SPLIT = re.compile(r"(?<![0-9.][eE])\+(?=\s*(?:[0-9.]+(?:[eE][-+]?\d+)?\s*\*\s*)?[A-Za-z_])")
_TERM = re.compile(
    r"^\s*(?:(?P<weight>[0-9.]+(?:[eE][-+]?\d+)?)\s*\*\s*)?"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?::(?P<params>.*))?$"
)


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return float(lowered)
    except ValueError:
        raise ValueError(f"value {text.strip()!r} is not a number, true/false or none") from None


def parse_loss_spec(spec: str) -> list[LossTerm]:
    """Parse ``"focal:gamma=2+0.5*dice:exclude_background=true"`` into terms.

    Grammar: terms joined by ``+``; a term is ``[weight*]name[:key=value[,key=value]]``.
    Raises ``OptionError`` naming the bad part and the valid choices.

    >>> [(t.weight, t.name, t.params) for t in parse_loss_spec("ce+0.5*dice:smooth=0")]
    [(1.0, 'ce', {}), (0.5, 'dice', {'smooth': 0.0})]
    """
    if not isinstance(spec, str) or not spec.strip():
        raise OptionError(f"empty loss spec; use terms such as: {', '.join(LOSS_NAMES)}")
    terms = []
    for part in _TERM_SPLIT.split(spec):
        match = _TERM.match(part)
        if match is None:
            raise OptionError(
                f"loss spec {spec!r}: cannot read term {part.strip()!r}; "
                "expected [weight*]name[:key=value,...]"
            )
        name = match["name"].lower()
        if name not in _FACTORIES:
            raise OptionError(
                f"loss spec {spec!r}: unknown loss {name!r}; choose from {', '.join(LOSS_NAMES)}"
            )
        params: dict[str, Any] = {}
        for item in (match["params"] or "").split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            allowed = _SPEC_PARAMS[name]
            if not sep:
                raise OptionError(
                    f"loss spec {spec!r}: {name} parameter {item.strip()!r} needs =value"
                )
            if key not in allowed:
                choices = ", ".join(allowed) if allowed else "none"
                raise OptionError(
                    f"loss spec {spec!r}: {name} has no parameter {key!r}; parameters: {choices}"
                )
            if key in params:
                raise OptionError(f"loss spec {spec!r}: {name} parameter {key!r} given twice")
            try:
                params[key] = _parse_value(value)
            except ValueError as error:
                raise OptionError(f"loss spec {spec!r}: {name}.{key}: {error}") from None
        weight = float(match["weight"]) if match["weight"] else 1.0
        if not math.isfinite(weight) or weight <= 0:
            raise OptionError(f"loss spec {spec!r}: term weight must be > 0; got {weight}")
        terms.append(LossTerm(weight, name, params))
    return terms


def build_loss(
    spec: str = "ce",
    *,
    class_weights: Sequence[float] | Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    deep_supervision_weights: Sequence[float] | None = None,
) -> DeepSupervisionLoss:
    """Build the loss described by ``spec`` (see :func:`parse_loss_spec`).

    ``class_weights`` (one per class, e.g. from ``segkit weights``) apply to ``ce``,
    ``bce`` and ``focal``. The result accepts a logits tensor or a list of them (UNet++
    deep supervision, averaged with ``deep_supervision_weights``); call it as
    ``loss(outputs, target, weight_map=None)``. Invalid specs or values raise
    ``OptionError``.
    """
    terms = []
    for term in parse_loss_spec(spec):
        kwargs = dict(term.params)
        if term.name != "dice":
            kwargs["class_weights"] = class_weights
        try:
            terms.append((term.weight, _FACTORIES[term.name](ignore_index=ignore_index, **kwargs)))
        except (TypeError, ValueError) as error:
            raise OptionError(f"loss spec {spec!r}: {term.name}: {error}") from error
    try:
        return DeepSupervisionLoss(CombinedLoss(terms), deep_supervision_weights)
    except ValueError as error:
        raise OptionError(str(error)) from error
