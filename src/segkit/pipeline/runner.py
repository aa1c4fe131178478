"""``run(input, output, ...)``: convert → validate → split → weights → train → report (→ predict).

An orchestrator, like ``segkit.demo``: it calls each stage's public function in turn,
handing over through the files they write, as a user typing the commands would::

    OUT/segkit-run.toml        the resolved configuration (written before the first stage)
    OUT/dataset/               convert → validate → split → weights
    OUT/runs/NAME/             train
    OUT/report/val/, test/     report on the val split (and the test split when there is one)
    OUT/predictions/           predict on the --predict folder: masks, overlays, labelme JSON
    OUT/.segkit-run-state.json what ran with which key (see segkit.pipeline.plan)

A stage whose key is unchanged and whose outputs exist is skipped; one that changed
runs through its own incremental logic (convert and weights redo changed files only,
split keeps existing assignments, an interrupted training resumes from its state).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import segkit
from segkit._io import atomic_write_text
from segkit.errors import DatasetError, OptionError
from segkit.ownership import is_bookkeeping, output_folder
from segkit.pipeline import plan
from segkit.pipeline.config import CONFIG_NAME, RunConfig, resolve

FORMAT = "segkit-run-summary"
SPLITS = ("val", "test")
#: How many problems an error line names before "and N more".
SHOWN = 3
#: Findings about split files that the split stage, next in the chain, rewrites: on a
#: rerun after labelme files were added or removed they are expected, not a stop.
SPLIT_FIXES = frozenset({"split-unassigned", "split-unknown-stem", "split-trainval-mismatch"})


@dataclass(frozen=True)
class RunEvent:
    """Progress for a renderer.

    ``stage_start`` (``reasons``: why it runs), ``stage_skip`` (up to date),
    ``stage_end`` (``summary``, ``seconds``), ``progress`` (``done`` of ``count`` within
    the stage) and ``train`` (``train_event``: one of the training stage's own events).
    ``index`` of ``total`` places the stage in the chain.
    """

    kind: str
    stage: str
    index: int
    total: int
    reasons: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    done: int = 0
    count: int = 0
    train_event: Any = None


@dataclass(frozen=True)
class RunSummary:
    """What the run did and where everything is (``--json``)."""

    config: RunConfig
    stages: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    ran: dict[str, list[str]]
    skipped: list[str]

    @property
    def output(self) -> Path:
        return self.config.output

    @property
    def miou(self) -> float | None:
        """Val mIoU of the report."""
        return self._score("val", "mIoU")

    @property
    def object_f1(self) -> float | None:
        """Val object F1 (pooled, IoU ≥ 0.5); None without instance masks."""
        return self._score("val", "object_f1")

    @property
    def report_html(self) -> Path:
        return self.config.report_dir / "val" / "report.html"

    @property
    def device(self) -> str:
        return self.stages.get("train", {}).get("device", "")

    def _score(self, split: str, name: str) -> float | None:
        return self.stages.get("report", {}).get(split, {}).get(name)

    def next_command(self) -> str:
        """What to do for the next labeling round (paths relative to the working folder)."""
        cfg = self.config
        if cfg.predict is None:
            return (
                f"segkit run {shown(cfg.input)} -o {shown(cfg.output)} --predict "
                "UNLABELED_IMAGES/ (pre-annotations for the next labeling round)"
            )
        return (
            f"labelme {shown(cfg.predict)} --output {shown(cfg.predictions / 'labelme')} "
            f"(most uncertain first: {shown(cfg.predictions / 'ranking.csv')}); then move "
            f"the corrected files into {shown(cfg.input)} and run "
            f"`segkit run --config {shown(cfg.config_file)}`"
        )

    def to_dict(self) -> dict[str, Any]:
        convert = self.stages.get("convert", {})
        cfg = self.config
        return {
            "format": FORMAT,
            "segkit_version": segkit.__version__,
            "output": str(cfg.output),
            "config": str(cfg.config_file),
            "images": convert.get("images"),
            "classes": convert.get("classes"),
            "mIoU": self.miou,
            "object_f1": self.object_f1,
            "test_mIoU": self._score("test", "mIoU"),
            "device": self.device,
            "paths": {
                "dataset": str(cfg.dataset),
                "run": str(cfg.run_dir),
                "report": str(cfg.report_dir),
                "report_html": str(self.report_html),
                "predictions": None if cfg.predict is None else str(cfg.predictions),
            },
            "ran": self.ran,
            "skipped": self.skipped,
            "seconds": self.seconds,
            "next_command": self.next_command(),
            "stages": self.stages,
        }


def shown(path: Path) -> str:
    """``path`` as a person would type it here: relative to the working folder when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_folders(cfg: RunConfig) -> None:
    """Refuse inputs and outputs that would mix up or lose data (``OptionError``)."""
    if not cfg.input.is_dir():
        problem = "is not a folder" if cfg.input.exists() else "labelme folder not found"
        raise OptionError(f"{cfg.input}: {problem}")
    if cfg.predict is not None and not cfg.predict.is_dir():
        problem = "is not a folder" if cfg.predict.exists() else "folder not found"
        raise OptionError(f"--predict {cfg.predict}: {problem}")
    out = cfg.output
    if out.is_relative_to(cfg.input):
        raise OptionError(
            f"{out}: lies inside the labelme folder {cfg.input} (its JSON would be read as "
            "annotations); give -o a folder outside it"
        )
    if out.is_symlink():
        raise OptionError(f"{out}: is a symbolic link; give -o a real folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise OptionError(f"{out}: exists and is not a folder")
    if (out / CONFIG_NAME).is_file() or (out / plan.STATE_NAME).is_file():
        return  # an earlier run: carry on from it
    # The labelme folder may lie inside -o (segkit demo writes it there first).
    other = [
        p
        for p in out.iterdir()
        if not is_bookkeeping(p.name) and not cfg.input.is_relative_to(p.resolve())
    ]
    if other:
        raise OptionError(
            f"{out}: folder is not empty and holds no segkit run; give -o a new folder"
        )


def _shown(lines: list[str]) -> str:
    more = f" (and {len(lines) - SHOWN} more)" if len(lines) > SHOWN else ""
    return "; ".join(lines[:SHOWN]) + more


class _Chain:
    """Runs the stages in order, each only when stale, recording the state."""

    def __init__(self, cfg: RunConfig, emit: Callable[[RunEvent], None]) -> None:
        self.cfg, self.emit = cfg, emit
        self.state = plan.RunState(cfg.output)
        self.names = ["convert", "validate", "split", "weights", "train", "report"]
        if cfg.predict is not None:
            self.names.append("predict")
        self.stages: dict[str, dict[str, Any]] = {}
        self.seconds: dict[str, float] = {}
        self.ran: dict[str, list[str]] = {}
        self.skipped: list[str] = []

    def step(
        self,
        name: str,
        key: dict[str, Any],
        outputs: list[Path],
        action: Callable[[Callable[[int, int], None], list[str]], dict[str, Any]],
    ) -> dict[str, Any]:
        index, total = self.names.index(name) + 1, len(self.names)
        record = self.state.record(name)
        reasons = plan.stale_reasons(record, key, outputs)
        if not reasons and record is not None:
            self.skipped.append(name)
            self.stages[name] = dict(record.get("summary") or {})
            self.emit(RunEvent("stage_skip", name, index, total, summary=self.stages[name]))
            return self.stages[name]
        self.ran[name] = reasons
        self.emit(RunEvent("stage_start", name, index, total, reasons=tuple(reasons)))

        def progress(done: int, count: int) -> None:
            self.emit(RunEvent("progress", name, index, total, done=done, count=count))

        self.state.start(name, key)
        started = time.perf_counter()
        summary = action(progress, reasons)
        seconds = round(time.perf_counter() - started, 2)
        self.state.finish(name, summary, seconds)
        self.stages[name], self.seconds[name] = summary, seconds
        self.emit(RunEvent("stage_end", name, index, total, summary=summary, seconds=seconds))
        return summary


def _key(options: Any, **inputs: Any) -> dict[str, Any]:
    return {"options": plan.options_key(options.to_dict()), **inputs}


def _convert(chain: _Chain) -> None:
    from segkit.convert_stage import convert

    cfg = chain.cfg
    options = cfg.options("convert")
    labels = options.labels if isinstance(options.labels, str) else None
    inputs = {"input": plan.folder_fingerprint(cfg.input, exclude=cfg.output)}
    if labels is not None and Path(labels).is_file():
        inputs["labels"] = plan.file_fingerprint(Path(labels))

    def action(progress: Callable[[int, int], None], reasons: list[str]) -> dict[str, Any]:
        summary = convert(cfg.input, cfg.dataset, options, progress)
        if summary.failures:
            raise DatasetError(
                f"{len(summary.failures)} labelme file(s) failed to convert: "
                f"{_shown(summary.failures)}; fix them and run again"
            )
        return summary.to_dict()

    chain.step("convert", _key(options, **inputs), [cfg.dataset / "segkit.json"], action)


def _validate(chain: _Chain) -> None:
    from segkit.validate_stage import validate

    cfg = chain.cfg
    options = cfg.options("validate")
    key = _key(options, dataset=plan.dataset_digest(cfg.dataset), keep_going=cfg.keep_going)

    def action(progress: Callable[[int, int], None], reasons: list[str]) -> dict[str, Any]:
        summary = validate(cfg.dataset, options, progress)
        found = [f for f in summary.findings if f.check not in SPLIT_FIXES]
        errors = [_finding_line(f) for f in found if f.severity == "error"]
        warnings = [_finding_line(f) for f in found if f.severity != "error"]
        if errors:
            raise DatasetError(
                f"{cfg.dataset}: validate found {len(errors)} error(s): {_shown(errors)}; "
                f"fix the annotations and run again (details: segkit validate {cfg.dataset})"
            )
        if warnings and not cfg.keep_going:
            raise DatasetError(
                f"{cfg.dataset}: validate found {len(warnings)} warning(s): {_shown(warnings)}; "
                "fix them, or add --keep-going to continue past warnings"
            )
        return summary.to_dict()

    chain.step("validate", key, [], action)


def _finding_line(finding: Any) -> str:
    where = f"{finding.file}: " if finding.file else ""
    return f"{where}{finding.detail} ({finding.check})"


def _split(chain: _Chain) -> None:
    from segkit.split_stage import split_dataset

    cfg = chain.cfg
    options = cfg.options("split")
    key = _key(options, dataset=plan.dataset_digest(cfg.dataset))
    outputs = [cfg.dataset / "ImageSets" / "Segmentation" / "train.txt"]
    chain.step(
        "split",
        key,
        outputs,
        lambda progress, reasons: split_dataset(cfg.dataset, options, progress).to_dict(),
    )


def _weights(chain: _Chain) -> None:
    from segkit.weights_stage import compute_weights

    cfg = chain.cfg
    options = cfg.options("weights")
    key = _key(
        options,
        dataset=plan.dataset_digest(cfg.dataset),
        splits=plan.splits_digest(cfg.dataset),
    )
    chain.step(
        "weights",
        key,
        [cfg.dataset / "weights.json"],
        lambda progress, reasons: compute_weights(cfg.dataset, options, progress).to_dict(),
    )


def _train(chain: _Chain) -> None:
    from segkit.train.options import RESUMABLE
    from segkit.train.stage import train

    cfg = chain.cfg
    options = cfg.options("train")
    inputs = {
        "dataset": plan.dataset_digest(cfg.dataset),
        "splits": plan.splits_digest(cfg.dataset),
    }
    if options.class_weights or options.border_weights:
        inputs["weights"] = plan.file_digest(cfg.dataset / "weights.json")
    key = _key(options, **inputs)
    record = chain.state.record("train")

    def resumable() -> bool:
        """The run folder holds this training, stopped or finished, with the same data
        and options except ones a resume may change (epochs, time, patience, …)."""
        from segkit.train.state import has_state

        old = (record or {}).get("key") or {}
        if not has_state(cfg.run_dir) or {k: v for k, v in old.items() if k != "options"} != {
            k: v for k, v in key.items() if k != "options"
        }:
            return False
        before, now = old.get("options", {}), key["options"]
        changed = {k for k in {*before, *now} if before.get(k) != now.get(k)}
        return changed <= RESUMABLE

    def on_event(event: Any) -> None:
        chain.emit(RunEvent("train", "train", chain.names.index("train") + 1,
                            len(chain.names), train_event=event))  # fmt: skip

    def action(progress: Callable[[int, int], None], reasons: list[str]) -> dict[str, Any]:
        if resumable():
            changes = {name: getattr(options, name) for name in RESUMABLE}
            try:
                return train(
                    cfg.dataset, cfg.run_dir, resume=True, on_event=on_event, **changes
                ).to_dict()
            except OptionError:
                pass  # the folder holds another run after all: start over below
        return train(cfg.dataset, cfg.run_dir, options, force=True, on_event=on_event).to_dict()

    chain.step("train", key, [cfg.run_dir / "checkpoints" / "best.safetensors"], action)


def _checkpoint(cfg: RunConfig, name: str) -> Path:
    return cfg.run_dir / "checkpoints" / f"{name}.safetensors"


def _report_splits(cfg: RunConfig) -> list[str]:
    folder = cfg.dataset / "ImageSets" / "Segmentation"
    return [
        split
        for split in SPLITS
        if (folder / f"{split}.txt").is_file() and (folder / f"{split}.txt").read_text().split()
    ]


def _report(chain: _Chain) -> None:
    from segkit.report.stage import report

    cfg = chain.cfg
    options = cfg.options("report")
    splits = _report_splits(cfg)
    key = _key(
        options,
        dataset=plan.dataset_digest(cfg.dataset),
        splits=plan.splits_digest(cfg.dataset),
        model=plan.file_digest(_checkpoint(cfg, options.checkpoint)),
    )
    outputs = [cfg.report_dir / split / "report.json" for split in splits]

    def action(progress: Callable[[int, int], None], reasons: list[str]) -> dict[str, Any]:
        done = {}
        for split in splits:
            chosen = dataclasses.replace(options, split=split, force=True)
            result = report(cfg.run_dir, cfg.report_dir / split, chosen, progress)
            objects = result.report.get("objects") or {}
            done[split] = {
                "output": str(result.output),
                "images": result.report["images"],
                "mIoU": result.report["pixel"]["mIoU"],
                "aAcc": result.report["pixel"].get("aAcc"),
                "object_f1": objects.get("scores", {}).get("pooled", {}).get("f1"),
            }
        return done

    chain.step("report", key, outputs, action)


def _predict(chain: _Chain) -> None:
    from segkit.predict.stage import predict

    cfg = chain.cfg
    assert cfg.predict is not None
    options = dataclasses.replace(cfg.options("predict"), run=cfg.run_dir)
    key = {
        "options": plan.options_key(options.to_dict(), plan.NEUTRAL | {"run"}),
        "model": plan.file_digest(_checkpoint(cfg, options.checkpoint)),
        "images": plan.folder_fingerprint(cfg.predict, exclude=cfg.output),
    }

    def action(progress: Callable[[int, int], None], reasons: list[str]) -> dict[str, Any]:
        summary = predict(cfg.predict, cfg.predictions, options, progress).to_dict()
        summary.pop("per_image", None)  # in predictions.json; the state stays small
        return summary

    chain.step("predict", key, [cfg.predictions / "predictions.json"], action)


def run(
    input: Path | str | None = None,
    output: Path | str | None = None,
    *,
    config: Path | str | RunConfig | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
    **tables: Mapping[str, Any],
) -> RunSummary:
    """Run the whole chain on the labelme folder ``input`` into ``output``.

    ``config`` is a ``segkit-run.toml`` path (or a resolved :class:`RunConfig`);
    ``tables`` override it per table: ``run(src, out, train={"epochs": 5},
    run={"predict": "new/"})``. Raises ``OptionError`` before writing anything for bad
    options or folders, ``DatasetError`` when a stage finds the data unusable (convert
    failures, validate errors, warnings without ``keep_going``), ``TrainingInterrupted``
    after Ctrl-C during training (run again to resume).
    """
    if isinstance(config, RunConfig):
        cfg = config
    else:
        cfg = resolve(input, output, config=config, overrides=tables or None)
    check_folders(cfg)
    emit = on_event or (lambda event: None)
    cfg.output.mkdir(parents=True, exist_ok=True)
    with output_folder(cfg.output):
        text = cfg.to_toml()
        if not cfg.config_file.is_file() or cfg.config_file.read_text("utf-8") != text:
            atomic_write_text(cfg.config_file, text)
        chain = _Chain(cfg, emit)
        for stage in (_convert, _validate, _split, _weights, _train, _report):
            stage(chain)
        if cfg.predict is not None:
            _predict(chain)
    return RunSummary(cfg, chain.stages, chain.seconds, chain.ran, chain.skipped)
