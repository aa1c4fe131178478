"""``--time``: the run ends within its budget, validation and writes included (fake clock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_train import make_voc

import segkit.train.stage as stage
from segkit.train.budget import FIRST_WRITE_GUESS_S, MARGIN, TimeBudget


class FakeClock:
    """A clock that only moves when the test says so: durations are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_reserves_a_step_a_validation_and_the_writes():
    clock = FakeClock()
    budget = TimeBudget(100.0, clock=clock, val_pixels=1000)
    assert budget.fraction() == 0.0 and not budget.out_of_time()
    budget.restart_ticks()
    clock.now += 2.0
    budget.tick()
    assert budget.step_s == 2.0
    # Before a validation was timed it is extrapolated from the training speed.
    budget.record_training(4.0, pixels=2000)
    assert budget.validation_estimate() == pytest.approx(4.0 / 2000 * 1000 * 0.5)
    budget.record("val", 10.0)
    budget.record("save", 3.0)
    budget.record("final", 1.0)
    reserve = MARGIN * 2.0 + MARGIN * (10.0 + 3.0) + MARGIN * 1.0
    assert budget.reserve() == pytest.approx(reserve)
    clock.now += 100.0 - 2.0 - reserve - 0.01
    assert not budget.out_of_time()
    assert budget.out_of_time(extra=0.02)
    assert budget.fraction() == pytest.approx((100.0 - reserve - 0.01) / (100.0 - reserve))
    clock.now += 0.02
    assert budget.out_of_time()
    assert TimeBudget(None, clock=clock).out_of_time() is False
    resumed = TimeBudget(100.0, clock=clock, spent_before=40.0)
    resumed.restore(budget.to_dict())
    assert resumed.elapsed() == 40.0 and resumed.reserve() == pytest.approx(reserve)
    assert TimeBudget(1.0, clock=clock).finish_estimate() == pytest.approx(
        MARGIN * (3 * FIRST_WRITE_GUESS_S)
    )


def test_a_time_budget_covers_validation_and_writes(tmp_path: Path, monkeypatch):
    """Steps cost 0.5 s, a validation 2 s, each file write 0.3 s, start-up 1 s (fake):
    a 15 s run stops training early enough to validate and write within 15 s."""
    clock = FakeClock()
    monkeypatch.setattr(stage, "_clock", clock)

    def costs(function, seconds):
        def wrapped(*args, **kwargs):
            clock.now += seconds
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(stage, "_prepare_folder", costs(stage._prepare_folder, 1.0))
    monkeypatch.setattr(stage, "evaluate", costs(stage.evaluate, 2.0))
    monkeypatch.setattr(stage._Run, "save_checkpoint", costs(stage._Run.save_checkpoint, 0.3))
    monkeypatch.setattr(stage, "save_curves", costs(stage.save_curves, 0.3))
    monkeypatch.setattr(stage, "save_confusion", costs(stage.save_confusion, 0.3))
    lrs = []

    def on_event(event):
        if event.kind == "step":
            clock.now += 0.5
            lrs.append(event.step.lr)

    dataset = make_voc(tmp_path / "voc", n_train=4, n_val=1, size=16)
    summary = stage.train(
        dataset, tmp_path / "run", model="unet-tiny", time_minutes=0.25, batch_size=2,
        workers=0, augment=False, on_event=on_event,
    )  # fmt: skip
    assert summary.stopped == "time budget used"
    assert 15.0 - 4.5 < summary.seconds <= 15.0, summary.seconds  # used, not overrun
    assert len(lrs) >= 4  # at least two epochs of 2 steps
    assert lrs[-1] < 0.1 * 1e-3  # the schedule ends where training had to stop
    state = json.loads((tmp_path / "run" / "state" / "resume.json").read_text())
    timings = state["progress"]["timings"]
    assert timings["budget_s"] == 15.0
    assert timings["val_s"] == pytest.approx(2.0, abs=1e-9)
    assert timings["step_s"] == pytest.approx(0.5, abs=1e-9)
