"""``demo(output, options)``: ``segkit run`` on the bundled sample data, one folder out.

The demo is an orchestrator: it writes the sample labelme data, runs the chain through
:func:`segkit.pipeline.runner.run` with the demo's defaults (a tiny model, a time budget,
border weights), then predicts the test split's images, the ones neither training nor
model selection has seen::

    DIR/annotations/   the sample labelme data (written by segkit.sample_data)
    DIR/segkit-run.toml, DIR/dataset/, DIR/runs/train/, DIR/report/   segkit run's layout
    DIR/predictions/   predict on the test split's images: masks, overlays, labelme JSON
    DIR/demo.json      the demo's own summary

Run again over an earlier demo, it carries on like ``segkit run``: stages whose options
and inputs are unchanged are skipped, an interrupted training resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import segkit
from segkit._io import atomic_write_json
from segkit.defaults import DEMO_CROP, DEMO_MINUTES, DEMO_MODEL
from segkit.errors import OptionError
from segkit.pipeline.config import CONFIG_NAME
from segkit.pipeline.runner import RunEvent

DEFAULT_MINUTES = DEMO_MINUTES
DEFAULT_MODEL = DEMO_MODEL
DEFAULT_CROP = DEMO_CROP
DEMO_FILE = "demo.json"
FORMAT = "segkit-demo"


@dataclass(frozen=True)
class DemoOptions:
    """Settings of :func:`demo`; checked when built (``OptionError``).

    Training runs for ``minutes`` of wall-clock time unless ``epochs`` is given.
    ``scenes`` training scenes are added to the edge-case annotations (None: 42);
    ``workers=None`` lets each stage use every core.
    """

    epochs: int | None = None
    minutes: float = DEFAULT_MINUTES
    device: str = "auto"
    model: str = DEFAULT_MODEL
    crop: int = DEFAULT_CROP
    scenes: int | None = None
    seed: int = 0
    workers: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.minutes, (int, float)) or not 0 < self.minutes < float("inf"):
            raise OptionError(f"--minutes must be a positive number; got {self.minutes!r}")
        for name in ("epochs", "crop"):
            value = getattr(self, name)
            if value is None and name == "epochs":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"--{name} must be a positive integer; got {value!r}")
        if self.scenes is not None and (
            isinstance(self.scenes, bool) or not isinstance(self.scenes, int) or self.scenes < 4
        ):
            raise OptionError(f"--scenes must be an integer of at least 4; got {self.scenes!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values."""
        return asdict(self)


@dataclass(frozen=True)
class DemoSummary:
    """Where everything went and the headline numbers (``--json``)."""

    output: Path
    stages: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    miou: float | None
    object_f1: float | None
    report_html: Path
    device: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also written to ``DIR/demo.json``)."""
        return {
            "format": FORMAT,
            "segkit_version": segkit.__version__,
            "output": str(self.output),
            "mIoU": self.miou,
            "object_f1": self.object_f1,
            "report_html": str(self.report_html),
            "device": self.device,
            "seconds": self.seconds,
            "stages": self.stages,
        }


def _check_output(output: Path) -> bool:
    """True when ``output`` holds an earlier demo (re-run over it); refuse anything else."""
    if output.is_symlink():
        raise OptionError(f"{output}: is a symbolic link; give the demo a real folder")
    if not output.exists():
        return False
    if not output.is_dir():
        raise OptionError(f"{output}: exists and is not a folder")
    if (output / DEMO_FILE).is_file() or (output / CONFIG_NAME).is_file():
        return True
    if any(output.iterdir()):
        raise OptionError(
            f"{output}: folder is not empty and holds no earlier demo; give -o a new folder"
        )
    return False


def demo(
    output: Path | str,
    options: DemoOptions | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
) -> DemoSummary:
    """Write the sample data into ``output`` and run every stage on it.

    Raises ``OptionError`` for a folder that is neither new, empty nor an earlier demo
    (its files are never touched), and whatever a stage raises. ``on_event`` receives
    ``segkit run``'s events; the demo's own steps (sample data, predict) come with
    ``index`` 0.
    """
    # Imported here: the demo stands above every stage, and importing them is slow.
    from segkit.pipeline.runner import run
    from segkit.predict.stage import PredictOptions, predict
    from segkit.sample_data import DEMO_SCENES, write_sample_data

    options = options or DemoOptions()
    output = Path(output)
    _check_output(output)
    emit = on_event or (lambda event: None)
    annotations, dataset = output / "annotations", output / "dataset"
    stages: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}

    def step(name: str, action: Callable[[], Any]) -> Any:
        emit(RunEvent("stage_start", name, 0, 0))
        start = time.perf_counter()
        result = action()
        seconds[name] = round(time.perf_counter() - start, 2)
        stages[name] = result.to_dict() if hasattr(result, "to_dict") else result
        emit(RunEvent("stage_end", name, 0, 0, summary=stages[name], seconds=seconds[name]))
        return result

    output.mkdir(parents=True, exist_ok=True)
    scenes = DEMO_SCENES if options.scenes is None else options.scenes
    step(
        "sample data",
        lambda: {
            # No 16-bit TIFF: train takes one channel count and dtype per dataset.
            "folder": str(write_sample_data(annotations, scenes=scenes, tiff16=False)),
            "annotations": len(list(annotations.rglob("*.json"))),
        },
    )
    workers = {"workers": options.workers}
    budget = (
        {"time_minutes": options.minutes} if options.epochs is None else {"epochs": options.epochs}
    )
    chain = run(
        annotations,
        output,
        on_event=emit,
        convert={"labels": str(annotations / "labels.txt"), **workers},
        validate=workers,
        split={"val": 0.2, "test": 0.1, "seed": 0, **workers},
        weights=workers,
        train={
            "model": options.model,
            **budget,
            "crop": options.crop,
            "border_weights": True,
            "device": options.device,
            "seed": options.seed,
            "workers": 0,
        },
        report={"device": options.device},
    )
    stages.update(chain.stages)
    seconds.update(chain.seconds)
    # The test split: images neither training nor model selection has seen.
    test_ids = set((dataset / "ImageSets" / "Segmentation" / "test.txt").read_text().split())
    images = sorted(p for p in (dataset / "JPEGImages").iterdir() if p.stem in test_ids)
    step(
        "predict",
        lambda: predict(
            images,
            output / "predictions",
            PredictOptions(run=chain.config.run_dir, device=options.device, labelme=True),
        ),
    )
    summary = DemoSummary(
        output=output,
        stages=stages,
        seconds=seconds,
        miou=chain.miou,
        object_f1=chain.object_f1,
        report_html=chain.report_html,
        device=chain.device,
    )
    atomic_write_json(output / DEMO_FILE, {**summary.to_dict(), "options": options.to_dict()})
    return summary
