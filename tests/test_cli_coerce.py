"""segkit's option conversion (no pydantic) against Typer's own, on every parameter.

``segkit.cli._coerce`` replaces Typer's pydantic-based conversion for plain options; for
every parameter of every command, the same inputs must give the same value, or both
must refuse it (the wording may differ: ours names the value).
"""

from __future__ import annotations

import enum
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st

from segkit.cli._app import build_app
from segkit.cli._coerce import runtime_param

# A Typer without pydantic conversion keeps its own (segkit replaces nothing there).
build_runtime_param = pytest.importorskip("typer._coercion").build_runtime_param
GROUP = typer.main.get_command(build_app())
PARAMS = [
    (f"{name} {param.name}", param)
    for name, command in GROUP.commands.items()
    for param in command.params
]
NUMBER_TEXTS = [
    "0", "1", "-1", " 7 ", "5.0", "5.5", "1e3", "1e-3", "-0", "inf", "-inf", "nan",
    "1_000", "0x10", "", " ", "abc", "1,5", "+3", "007", "3.", ".5", "1e400",
]  # fmt: skip


def _outcome(runtime: Any, param: Any, value: Any) -> tuple[str, Any]:
    ctx = typer.Context(GROUP)
    try:
        return "ok", runtime.coerce(value, param=param, ctx=ctx)
    except typer.BadParameter:
        return "refused", None


def _same(ours: tuple[str, Any], theirs: tuple[str, Any]) -> bool:
    if ours[0] != theirs[0]:
        return False
    a, b = ours[1], theirs[1]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _samples(param: Any, folder: Path) -> list[Any]:
    annotation = param.type_descriptor.annotation
    leaf = getattr(annotation, "__args__", (annotation,))[0]
    if param.type_descriptor.parameter_info.parser is not None:
        (folder / "file.safetensors").write_text("")
        texts = [str(folder), str(folder / "file"), str(folder / "missing"), "", " ", folder]
    elif leaf in (int, float):
        texts: list[Any] = [*NUMBER_TEXTS, 3, 2.0, 2.5, True]
    elif leaf is bool:
        texts = [True, False, "true", "no", "1", "0", "maybe", "", "Y"]
    elif isinstance(leaf, type) and issubclass(leaf, enum.Enum):
        texts = [*(m.value for m in leaf), *(m.value.upper() for m in leaf), "nope", ""]
        texts += list(leaf)
    else:
        texts = ["a", "", " spaced ", "dir/file.txt", "ünïcode", Path("p")]
    if param.multiple or param.nargs != 1:
        arity = param.nargs if param.nargs > 1 else 2
        return [tuple(texts[i : i + arity]) for i in range(len(texts) - arity + 1)]
    return texts


@pytest.mark.parametrize(("name", "param"), PARAMS, ids=[name for name, _ in PARAMS])
def test_every_parameter_converts_as_typer_does(name: str, param: Any, tmp_path: Path) -> None:
    ours = runtime_param(param)
    assert ours is not None, f"{name}: no light converter (Typer would import pydantic)"
    theirs = build_runtime_param(param.type_descriptor)
    for value in _samples(param, tmp_path):
        a, b = _outcome(ours, param, value), _outcome(theirs, param, value)
        assert _same(a, b), f"{name}: {value!r}: segkit {a}, typer {b}"


# Number-like text: optional blanks, a sign, then digits, dots, exponents and the
# letters of inf/nan/infinity. Underscores and inner signs are left out: there pydantic
# takes forms Python does not ("0-2" as -2, "1._5" as 1.5), which segkit refuses.
numbers = st.one_of(
    st.tuples(
        st.sampled_from(["", " ", "\t"]),
        st.sampled_from(["", "+", "-"]),
        st.text(alphabet="0123456789.eEinfaINFty", max_size=8),
        st.sampled_from(["", " ", "\n"]),
    ).map("".join),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False).map(repr),
)


@settings(max_examples=150, deadline=None)
@given(text=numbers)
def test_numbers_convert_as_typer_does_on_any_text(text: str) -> None:
    for name, param in PARAMS:
        if param.type_descriptor.annotation in (int, float) and param.nargs == 1:
            ours, theirs = runtime_param(param), build_runtime_param(param.type_descriptor)
            a, b = _outcome(ours, param, text), _outcome(theirs, param, text)
            assert _same(a, b), f"{name}: {text!r}: segkit {a}, typer {b}"


def test_a_command_run_does_not_import_pydantic(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from segkit.cli import main\n"
        "sys.argv = ['segkit', 'split', sys.argv[1], '--val', '0.5', '--seed', '3']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


@pytest.mark.parametrize("text", ["0-2", "00-7", "1._5", "+_1"])
def test_number_forms_only_pydantic_takes_are_refused(text: str) -> None:
    command = GROUP.commands["train"]
    for param in command.params:
        if param.type_descriptor.annotation in (int, float) and param.nargs == 1:
            assert _outcome(runtime_param(param), param, text)[0] == "refused", param.name
