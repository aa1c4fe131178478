"""Input and output folders never overlap: ownership.check_apart and every stage using it."""

from __future__ import annotations

from pathlib import Path

import pytest

from segkit.errors import OptionError
from segkit.ownership import check_apart
from segkit.predict.stage import PredictOptions, predict
from segkit.report.stage import ReportOptions, report
from segkit.train.stage import train


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("in", "must differ from the input folder"),
        ("in/sub/out", "output folder lies inside the input folder"),
        (".", "input folder lies inside the output folder"),
    ],
)
def test_check_apart_refuses_every_overlap(tmp_path: Path, output: str, message: str) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(OptionError, match=message):
        check_apart(tmp_path / output, {"input folder": tmp_path / "in"})


def test_check_apart_sees_through_links_and_allows_siblings(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "in")
    with pytest.raises(OptionError, match="lies inside the input folder"):
        check_apart(tmp_path / "alias" / "out", {"input folder": tmp_path / "in"})
    check_apart(tmp_path / "in-out", {"input folder": tmp_path / "in", "dataset": None})


def test_check_apart_lets_named_inputs_hold_the_output_but_not_lie_inside_it(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    check_apart(run / "report", {"run folder": run}, may_hold_output=("run folder",))
    with pytest.raises(OptionError, match="run folder lies inside the output folder"):
        check_apart(tmp_path, {"run folder": run}, may_hold_output=("run folder",))


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_stages_refuse_outputs_inside_their_inputs_before_writing(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    before = _tree(tmp_path)
    with pytest.raises(OptionError, match="output folder lies inside the dataset"):
        train(folder, folder / "runs" / "a")
    options = PredictOptions(run=tmp_path / "run")
    with pytest.raises(OptionError, match="output folder lies inside the input folder"):
        predict([folder], folder / "pred", options)
    with pytest.raises(OptionError, match="output folder lies inside the dataset"):
        report(tmp_path / "pred", folder / "r", ReportOptions(mode="predictions", gt=folder))
    with pytest.raises(OptionError, match="predictions folder lies inside the output folder"):
        report(folder / "pred", folder, ReportOptions(mode="predictions", gt=tmp_path / "gt"))
    assert _tree(tmp_path) == before
