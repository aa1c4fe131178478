"""``--time``: when to stop training so that validation and the run's last writes still fit.

Pure bookkeeping on a clock: the stage reports how long steps, validations and
writes took; :class:`TimeBudget` keeps an estimate of each and says when the time left
is only what finishing needs (one more step, a validation, the epoch's writes and the
run's final writes). Before a validation has been timed, its cost is extrapolated
from the measured training speed; before writes have been timed, a fixed guess is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Guess for the writes at an epoch's end (checkpoints, state, metrics, curves) and at
#: the run's end (confusion matrix) before they have been timed once.
FIRST_WRITE_GUESS_S = 1.0
#: Forward-only inference costs about a third of a training step per pixel; half is
#: a cautious guess for the first validation.
VAL_PER_TRAIN_PIXEL = 0.5
#: Later durations are expected to be at most this much longer than the last measured.
MARGIN = 1.1


@dataclass
class TimeBudget:
    """A wall-clock budget of ``seconds`` for a whole run (earlier sessions included).

    ``clock`` is a monotonic clock in seconds (injectable for tests); ``started`` its
    reading when this session began and ``spent_before`` the seconds of earlier
    sessions of a resumed run.
    """

    seconds: float | None
    clock: Callable[[], float] = time.perf_counter
    started: float = field(default=-1.0)
    spent_before: float = 0.0
    step_s: float | None = None
    val_s: float | None = None
    save_s: float | None = None
    final_s: float | None = None
    train_pixel_s: float | None = None  # seconds per trained pixel (forward + backward)
    val_pixels: int = 0
    _last_tick: float | None = None

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def elapsed(self) -> float:
        """Seconds spent by the run so far."""
        return self.spent_before + self.clock() - self.started

    # -- measurements ---------------------------------------------------------------
    def restart_ticks(self) -> None:
        """The next :meth:`tick` starts a new interval (after a validation or the writes)."""
        self._last_tick = self.clock()

    def tick(self) -> None:
        """One optimizer step ended: its time since the previous tick updates the estimate."""
        now = self.clock()
        if self._last_tick is not None:
            seconds = now - self._last_tick
            self.step_s = seconds if self.step_s is None else 0.7 * self.step_s + 0.3 * seconds
        self._last_tick = now

    def record_training(self, seconds: float, pixels: int) -> None:
        """Compute seconds spent training on ``pixels`` image pixels (for the first validation)."""
        if pixels > 0 and seconds > 0:
            self.train_pixel_s = seconds / pixels

    def record(self, kind: str, seconds: float) -> None:
        """The measured duration of a ``"val"``, ``"save"`` or ``"final"`` phase."""
        setattr(self, f"{kind}_s", max(0.0, seconds))

    # -- estimates ------------------------------------------------------------------
    def validation_estimate(self) -> float:
        """Seconds the next validation is expected to take."""
        if self.val_s is not None:
            return self.val_s
        if self.train_pixel_s is not None:
            return self.train_pixel_s * self.val_pixels * VAL_PER_TRAIN_PIXEL
        return FIRST_WRITE_GUESS_S

    def _writes(self, kind: str) -> float:
        measured = getattr(self, f"{kind}_s")
        return FIRST_WRITE_GUESS_S if measured is None else measured

    def epoch_end_estimate(self, *, validate: bool) -> float:
        """Seconds an epoch's end takes: a validation (when ``validate``) and its writes."""
        return MARGIN * ((self.validation_estimate() if validate else 0.0) + self._writes("save"))

    def finish_estimate(self) -> float:
        """Seconds from the end of training to the end of the run: a validation, the
        epoch's writes and the run's final writes."""
        return self.epoch_end_estimate(validate=True) + MARGIN * self._writes("final")

    def reserve(self) -> float:
        """Seconds to keep free while training: one more step plus finishing."""
        return MARGIN * (self.step_s or 0.0) + self.finish_estimate()

    def out_of_time(self, *, extra: float = 0.0) -> bool:
        """True when only the reserve (plus ``extra`` seconds of work still planned
        before the next step) is left; always False without a budget."""
        if self.seconds is None:
            return False
        return self.elapsed() + extra + self.reserve() >= self.seconds

    def fraction(self) -> float:
        """Progress through the training part of the budget (the learning-rate schedule
        reaches its end when training has to stop)."""
        if self.seconds is None:
            raise ValueError("no time budget")
        training = max(self.seconds - self.reserve(), 1e-9)
        return self.elapsed() / training

    # -- resume ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The estimates, for the resume state and the run's record."""
        return {
            "budget_s": self.seconds,
            "step_s": self.step_s,
            "val_s": self.val_s,
            "save_s": self.save_s,
            "final_s": self.final_s,
            "train_pixel_s": self.train_pixel_s,
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take the estimates of an earlier session (``to_dict()`` output)."""
        for key in ("step_s", "val_s", "save_s", "final_s", "train_pixel_s"):
            value = data.get(key)
            if isinstance(value, (int, float)) and value >= 0:
                setattr(self, key, float(value))
