"""``demo(output, options)``: the whole chain on the bundled sample data, one folder out.

The demo is an orchestrator, not a stage: it sits above the stages in the import order
and calls each stage's public function in turn, handing over through the files they
write, exactly as a user typing the commands would::

    DIR/annotations/   the sample labelme data (written by segkit.sample_data)
    DIR/dataset/       convert → validate → split → weights
    DIR/run/           train
    DIR/run/report/    report (report.html, report.json, ...)
    DIR/predictions/   predict on the test split's images: masks, overlays, labelme JSON
    DIR/demo.json      the demo's own summary
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import segkit
from segkit._io import atomic_write_json
from segkit.defaults import DEMO_CROP, DEMO_MINUTES, DEMO_MODEL
from segkit.errors import OptionError

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
class DemoEvent:
    """Progress for a renderer: ``stage_start``/``stage_end`` (with the stage's summary
    dict) per stage, and ``train`` wrapping each of the training stage's own events."""

    kind: str
    stage: str
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    train_event: Any = None


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
    if (output / DEMO_FILE).is_file():
        return True
    if any(output.iterdir()):
        raise OptionError(
            f"{output}: folder is not empty and holds no earlier demo; give -o a new folder"
        )
    return False


def _object_f1(report: dict[str, Any]) -> float | None:
    objects = report.get("objects")
    if not objects:
        return None
    return objects["scores"]["pooled"].get("f1")


def demo(
    output: Path | str,
    options: DemoOptions | None = None,
    on_event: Callable[[DemoEvent], None] | None = None,
) -> DemoSummary:
    """Write the sample data into ``output`` and run every stage on it.

    Raises ``OptionError`` for a folder that is neither new, empty nor an earlier demo
    (its files are never touched), and whatever a stage raises. A re-run over an earlier
    demo redoes every stage (each stage's ``force`` deletes only what it wrote).
    """
    # Imported here: the demo stands above every stage, and importing them is slow.
    from segkit.convert_stage import convert
    from segkit.predict.stage import PredictOptions, predict
    from segkit.report.stage import ReportOptions, report
    from segkit.sample_data import DEMO_SCENES, write_sample_data
    from segkit.split_stage import split_dataset
    from segkit.train.stage import train
    from segkit.validate_stage import validate
    from segkit.weights_stage import compute_weights

    options = options or DemoOptions()
    output = Path(output)
    again = _check_output(output)
    emit = on_event or (lambda event: None)
    annotations, dataset, run = output / "annotations", output / "dataset", output / "run"
    stages: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}

    def step(name: str, action: Callable[[], Any]) -> Any:
        emit(DemoEvent("stage_start", name))
        start = time.perf_counter()
        result = action()
        seconds[name] = round(time.perf_counter() - start, 2)
        stages[name] = result.to_dict() if hasattr(result, "to_dict") else result
        emit(DemoEvent("stage_end", name, stages[name], seconds[name]))
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
    labels = str(annotations / "labels.txt")
    step(
        "convert",
        lambda: convert(annotations, dataset, labels=labels, force=again, workers=options.workers),
    )
    checked = step("validate", lambda: validate(dataset, workers=options.workers))
    if checked.errors:
        raise OptionError(f"{dataset}: the sample data failed validation ({checked.errors} errors)")
    splits = step(
        "split",
        lambda: split_dataset(dataset, val=0.2, test=0.1, seed=0, workers=options.workers),
    )
    step(
        "weights",
        lambda: compute_weights(dataset, border=True, force=again, workers=options.workers),
    )
    train_images = next(s.images for s in splits.splits if s.name == "train")
    trained = step(
        "train",
        lambda: train(
            dataset,
            run,
            force=again,
            on_event=lambda event: emit(DemoEvent("train", "train", train_event=event)),
            model=options.model,
            **(
                {"time_minutes": options.minutes}
                if options.epochs is None
                else {"epochs": options.epochs}
            ),
            crop=options.crop,
            batch_size=min(8, train_images),
            border_weights=True,
            device=options.device,
            seed=options.seed,
            workers=0,
        ),
    )
    scored = step(
        "report",
        lambda: report(run, options=ReportOptions(device=options.device, force=again)),
    )
    # The test split: images neither training nor model selection has seen.
    test_ids = (dataset / "ImageSets" / "Segmentation" / "test.txt").read_text().split()
    images = sorted(p for p in (dataset / "JPEGImages").iterdir() if p.stem in set(test_ids))
    step(
        "predict",
        lambda: predict(
            images,
            output / "predictions",
            PredictOptions(run=run, device=options.device, labelme=True, force=again),
        ),
    )
    summary = DemoSummary(
        output=output,
        stages=stages,
        seconds=seconds,
        miou=scored.report["pixel"]["mIoU"],
        object_f1=_object_f1(scored.report),
        report_html=scored.output / "report.html",
        device=trained.device,
    )
    atomic_write_json(output / DEMO_FILE, {**summary.to_dict(), "options": options.to_dict()})
    return summary
