"""``RunConfig``: the resolved options of every stage of ``segkit run``, and its TOML form.

Options come from three layers, later ones winning: the run's defaults, a TOML file
(``--config``), and the command line (or keyword arguments of :func:`segkit.run`).
The file has one table per stage whose keys are that stage's option fields
(``[train] lr = 0.01`` is ``TrainOptions.lr``), plus ``[run]`` for the run itself::

    [run]
    input = "/data/annotations"
    output = "/data/work"
    [train]
    model = "unet-small"
    epochs = 40

A key TOML cannot hold (``None``) is left out and means the stage's default; a
``labels.txt`` in the labelme folder is ``[convert] labels`` unless labels are given. Options
the run sets itself (each stage's ``force``, report's split and mode, predict's run)
are not keys. Unknown tables or keys are one ``OptionError`` naming them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segkit.errors import OptionError
from segkit.pipeline import toml

CONFIG_NAME = "segkit-run.toml"
DEFAULT_NAME = "train"
#: Used as ``[convert] labels`` when the labelme folder holds one and no labels are given.
LABELS_FILE = "labels.txt"
#: Keys of ``[run]``: where the data is, where everything goes, what else to do.
RUN_KEYS = ("input", "output", "name", "predict", "keep_going")
STAGES = ("convert", "validate", "split", "weights", "train", "report", "predict")
#: Option fields the run decides, per stage (never keys of the file).
CONTROLLED = {
    "convert": {"force"},
    "weights": {"force"},
    "report": {"mode", "gt", "split", "force", "command"},
    "predict": {"run", "force", "command"},
}
#: Where the run's defaults differ from the stage's own.
RUN_DEFAULTS: dict[str, dict[str, Any]] = {"predict": {"labelme": True, "rank": "uncertainty"}}
HEADER = (
    "segkit run: the resolved options of every stage (written before the first stage).\n"
    "Edit and repeat with `segkit run --config THIS_FILE`; a changed option reruns\n"
    "exactly the stages it affects. A key left out means the stage's default."
)


def option_classes() -> dict[str, type]:
    """Each stage's options dataclass (imported on use: the model stages load torch)."""
    from segkit.convert_stage import ConvertOptions
    from segkit.predict.stage import PredictOptions
    from segkit.report.stage import ReportOptions
    from segkit.split_stage import SplitOptions
    from segkit.train.options import TrainOptions
    from segkit.validate_stage import ValidateOptions
    from segkit.weights_stage import WeightsOptions

    return {
        "convert": ConvertOptions,
        "validate": ValidateOptions,
        "split": SplitOptions,
        "weights": WeightsOptions,
        "train": TrainOptions,
        "report": ReportOptions,
        "predict": PredictOptions,
    }


def stage_keys(stage: str) -> list[str]:
    """The keys ``[stage]`` may hold."""
    cls = option_classes()[stage]
    return [f.name for f in dataclasses.fields(cls) if f.name not in CONTROLLED.get(stage, ())]


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``segkit run`` does; build it with :func:`resolve`.

    ``stages`` maps each stage name to its options object (``ConvertOptions`` …
    ``PredictOptions``); ``predict`` is the folder of new images (None: no predict stage).
    """

    input: Path
    output: Path
    name: str = DEFAULT_NAME
    predict: Path | None = None
    keep_going: bool = False
    stages: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> Path:
        return self.output / "dataset"

    @property
    def run_dir(self) -> Path:
        return self.output / "runs" / self.name

    @property
    def report_dir(self) -> Path:
        return self.output / "report"

    @property
    def predictions(self) -> Path:
        return self.output / "predictions"

    @property
    def config_file(self) -> Path:
        return self.output / CONFIG_NAME

    def options(self, stage: str) -> Any:
        """The options object of ``stage``."""
        return self.stages[stage]

    def section(self, stage: str) -> dict[str, Any]:
        """``[stage]`` as plain values (every key, ``None`` for unset ones)."""
        data = self.stages[stage].to_dict()
        return {key: data.get(key) for key in stage_keys(stage)}

    def to_tables(self) -> dict[str, dict[str, Any]]:
        """The whole configuration as TOML tables."""
        run = {
            "input": str(self.input),
            "output": str(self.output),
            "name": self.name,
            "predict": None if self.predict is None else str(self.predict),
            "keep_going": self.keep_going,
        }
        return {"run": run, **{stage: self.section(stage) for stage in STAGES}}

    def to_toml(self) -> str:
        """The text of ``segkit-run.toml``."""
        return toml.dumps(self.to_tables(), comments={"run": HEADER})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``None`` kept)."""
        return self.to_tables()


def read_config(path: Path) -> dict[str, dict[str, Any]]:
    """The tables of a configuration file (``OptionError`` when unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OptionError(f"{path}: cannot read the configuration ({error})") from None
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as error:
        raise OptionError(f"{path}: not valid TOML ({error})") from None
    check_tables(data, str(path))
    return data


def check_tables(data: Mapping[str, Any], where: str) -> None:
    """One ``OptionError`` naming every unknown table and key (and non-table values)."""
    problems = []
    unknown = [name for name in data if name not in ("run", *STAGES)]
    if unknown:
        problems.append(
            f"unknown table(s) {', '.join(f'[{n}]' for n in unknown)}; "
            f"known: {', '.join(f'[{n}]' for n in ('run', *STAGES))}"
        )
    for name, values in data.items():
        if name in unknown:
            continue
        if not isinstance(values, Mapping):
            problems.append(f"{name} must be a table ([{name}]), not a value")
            continue
        known = RUN_KEYS if name == "run" else stage_keys(name)
        extra = [key for key in values if key not in known]
        if extra:
            problems.append(
                f"unknown key(s) in [{name}]: {', '.join(extra)}; known: {', '.join(known)}"
            )
    if problems:
        raise OptionError(f"{where}: {'; '.join(problems)}")


def _absolute(value: Any, base: Path) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _stage_values(stage: str, values: dict[str, Any], base: Path) -> dict[str, Any]:
    """TOML values → the types the options classes hold; relative paths from ``base``."""
    values = dict(values)
    if stage == "report" and isinstance(values.get("classes"), list):
        values["classes"] = tuple(values["classes"])
    if stage == "split" and values.get("groups_csv") is not None:
        values["groups_csv"] = _absolute(values["groups_csv"], base)
    if stage == "train" and isinstance(values.get("encoder_weights"), str):
        values["encoder_weights"] = str(_absolute(values["encoder_weights"], base))
    labels = values.get("labels")
    if stage == "convert" and isinstance(labels, str) and "," not in labels:
        candidate = _absolute(labels, base)
        if candidate.is_file():  # a labels.txt path (else class names, checked by convert)
            values["labels"] = str(candidate)
    return values


def _build(stage: str, values: dict[str, Any], where: str) -> Any:
    cls = option_classes()[stage]
    if stage == "predict":
        values = {**values, "run": Path(".")}  # set by the runner
    try:
        return cls(**values)
    except OptionError as error:
        raise OptionError(f"{where}[{stage}] {error}") from None
    except (TypeError, ValueError) as error:  # a value of the wrong type
        raise OptionError(f"{where}[{stage}] a value has the wrong type: {error}") from None


def resolve(
    input: Path | str | None = None,
    output: Path | str | None = None,
    *,
    config: Path | str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> RunConfig:
    """Defaults < ``config`` file < ``overrides`` (``{table: {key: value}}``, e.g. from the
    command line) < ``input``/``output``; relative paths of the file count from its
    folder, others from the working directory."""
    layers: list[tuple[Mapping[str, Mapping[str, Any]], Path, str]] = [
        (RUN_DEFAULTS, Path.cwd(), "")
    ]
    if config is not None:
        config = Path(config)
        layers.append((read_config(config), config.resolve().parent, f"{config}: "))
    if overrides:
        check_tables(overrides, "options")
        layers.append((overrides, Path.cwd(), ""))
    run: dict[str, Any] = {}
    run_base: dict[str, Path] = {}
    merged: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    where = ""
    for tables, base, label in layers:
        where = label or where
        for key, value in tables.get("run", {}).items():
            if value is not None:
                run[key], run_base[key] = value, base
        for stage in STAGES:
            values = {k: v for k, v in tables.get(stage, {}).items() if v is not None}
            merged[stage].update(_stage_values(stage, values, base))
        train_layer = tables.get("train", {})
        if train_layer.get("epochs") is not None and train_layer.get("time_minutes") is None:
            merged["train"].pop("time_minutes", None)  # epochs replace a time budget
    for key, value in (("input", input), ("output", output)):
        if value is not None:
            run[key], run_base[key] = value, Path.cwd()
    for key in ("input", "output"):
        if not str(run.get(key) or "").strip():
            what = "labelme folder" if key == "input" else "output folder (-o)"
            raise OptionError(f"no {what} given; name it or give --config FILE")
    input_dir = _absolute(run["input"], run_base["input"])
    if "labels" not in merged["convert"] and (input_dir / LABELS_FILE).is_file():
        # labelme's own convention: the class list beside the annotations
        merged["convert"]["labels"] = str(input_dir / LABELS_FILE)
    train = merged["train"]
    if train.get("border_weights"):
        merged["weights"]["border"] = True  # the loss uses the maps: the weights stage makes them
    name = run.get("name", DEFAULT_NAME)
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name:
        raise OptionError(f"{where}[run] name must be a plain folder name; got {name!r}")
    keep_going = run.get("keep_going", False)
    if not isinstance(keep_going, bool):
        raise OptionError(f"{where}[run] keep_going must be true or false; got {keep_going!r}")
    predict = run.get("predict")
    return RunConfig(
        input=input_dir,
        output=_absolute(run["output"], run_base["output"]),
        name=name,
        predict=None if predict is None else _absolute(predict, run_base["predict"]),
        keep_going=keep_going,
        stages={stage: _build(stage, merged[stage], where) for stage in STAGES},
    )
