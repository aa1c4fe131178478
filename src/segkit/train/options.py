"""``TrainOptions``: every ``segkit train`` setting, validated once, saved in the run folder."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from segkit.errors import OptionError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly", "constant")
MONITORS = ("mIoU", "aAcc", "val_loss", "object_F1")
DEFAULT_MODEL = "unet-tiny"

#: Options that must lie in ``[0, bound]``.
_BOUNDED = {
    "weight_decay": math.inf,
    "momentum": 1.0,
    "warmup": 1.0,
    "clip_grad": math.inf,
    "rotate": 180.0,
    "scale": 0.9,
    "elastic": 1.0,
    "brightness": 1.0,
    "contrast": 1.0,
}

#: Options a ``--resume`` may change; any other difference from the saved run is refused.
RESUMABLE = frozenset(
    {
        "epochs",
        "time_minutes",
        "patience",
        "save_every",
        "val_every",
        "workers",
        "device",
        "cache",
        "compile",
    }
)


@dataclass(frozen=True)
class TrainOptions:
    """Settings of one training run; ``validate()`` runs in ``__post_init__``.

    ``crop=None`` means the smaller of 256 (128 on a CPU) and the smallest training image side;
    ``batch_size=0`` means "auto" (the largest batch that fits, CUDA only);
    ``time_minutes`` replaces ``epochs`` by a wall-clock budget.
    """

    model: str = DEFAULT_MODEL
    loss: str = "ce+dice"
    class_weights: bool = False
    border_weights: bool = False
    encoder_weights: str | None = None
    epochs: int = 50
    time_minutes: float | None = None
    batch_size: int = 8
    crop: int | None = None
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: float = 0.03
    clip_grad: float = 1.0
    accumulate: int = 1
    precision: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    device: str = "auto"
    augment: bool = True
    rotate: float = 15.0
    scale: float = 0.15
    elastic: float = 0.25
    brightness: float = 0.1
    contrast: float = 0.1
    val_every: int = 1
    monitor: str = "mIoU"
    patience: int | None = None
    seed: int = 0
    workers: int | None = None
    cache: bool = True
    save_every: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``OptionError`` naming the first invalid option."""
        _positive_int("epochs", self.epochs)
        _positive_int("accumulate", self.accumulate)
        _positive_int("val-every", self.val_every)
        if not _is_int(self.batch_size) or self.batch_size < 0:
            raise OptionError(
                f"--batch-size must be a positive integer or auto; got {self.batch_size!r}"
            )
        for name in ("crop", "patience", "save_every"):
            value = getattr(self, name)
            if value is not None:
                _positive_int(name.replace("_", "-"), value)
        if self.crop is not None and self.crop < 8:
            raise OptionError(f"--crop must be at least 8 pixels; got {self.crop}")
        if self.workers is not None and (not _is_int(self.workers) or self.workers < 0):
            raise OptionError(f"--workers must be 0 or more; got {self.workers!r}")
        if self.time_minutes is not None and not (
            math.isfinite(self.time_minutes) and self.time_minutes > 0
        ):
            raise OptionError(
                f"--time must be a positive number of minutes; got {self.time_minutes}"
            )
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("monitor", self.monitor, MONITORS)
        if not _number(self.lr) or self.lr <= 0:
            raise OptionError(f"--lr must be a positive number; got {self.lr!r}")
        for name, high in _BOUNDED.items():
            value = getattr(self, name)
            if not _number(value) or not 0 <= value <= high:
                flag = name.replace("_", "-")
                raise OptionError(f"--{flag} must be between 0 and {high:g}; got {value!r}")
        if not _is_int(self.seed):
            raise OptionError(f"--seed must be an integer; got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every option as plain JSON values (the ``options`` of ``config.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """Rebuild options from ``to_dict()`` output; unknown keys are an ``OptionError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OptionError(f"unknown train option(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainOptions:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def resume_conflicts(saved: TrainOptions, requested: dict[str, Any]) -> list[str]:
    """``"name: saved → requested"`` for each requested change ``--resume`` cannot make."""
    return [
        f"{name}: {getattr(saved, name)!r} → {value!r}"
        for name, value in sorted(requested.items())
        if name not in RESUMABLE and getattr(saved, name) != value
    ]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise OptionError(f"--{name} must be a positive integer; got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
