"""The import rules of docs/architecture.md, checked in fresh interpreters and on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "segkit"
#: The data stages (pure core and file shell) and the helpers they use: no torch.
DATA_MODULES = (
    "convert_one",
    "convert_stage",
    "dataset",
    "imagehash",
    "labelme",
    "manifest",
    "parallel",
    "png",
    "rasterize",
    "sample_data",
    "split",
    "split_stage",
    "validate",
    "validate_stage",
    "voc",
    "weights",
    "weights_stage",
)


def loaded_after(statement: str) -> set[str]:
    """Top-level module names loaded after running ``statement`` in a fresh interpreter."""
    code = f"{statement}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def imported_names(path: Path) -> set[str]:
    """Top-level packages a source file imports, wherever the import statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_import_segkit_loads_neither_numpy_nor_torch() -> None:
    loaded = loaded_after("import segkit; segkit.__version__")
    assert "segkit" in loaded
    assert not {"numpy", "torch", "typer", "rich", "PIL", "scipy"} & loaded


def test_data_stages_do_not_load_torch() -> None:
    # One interpreter for all of them: if any one pulled torch in, it would be loaded.
    loaded = loaded_after("; ".join(f"import segkit.{module}" for module in DATA_MODULES))
    assert "numpy" in loaded  # the modules really were imported
    assert "torch" not in loaded


def test_data_stages_name_no_torch_import() -> None:
    # Also catches an import inside a function, which loading the module would not run.
    for module in DATA_MODULES:
        assert "torch" not in imported_names(SRC / f"{module}.py"), module


def test_only_cli_imports_typer_and_rich() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if "cli" not in path.relative_to(SRC).parts
        and imported_names(path) & {"typer", "rich", "click"}
    ]
    assert offenders == []


def test_stages_do_not_import_each_other() -> None:
    stages = {path.stem for path in SRC.glob("*_stage.py")}
    assert {"convert_stage", "split_stage", "validate_stage", "weights_stage"} <= stages
    for stage in sorted(stages):
        text = (SRC / f"{stage}.py").read_text(encoding="utf-8")
        others = {f"segkit.{other}" for other in stages - {stage}}
        assert not [o for o in others if o in text], stage


def test_every_public_segkit_error_is_defined_in_errors_py() -> None:
    import segkit.errors

    defined = {
        node.name
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and not node.name.startswith("_")
        and any(isinstance(b, ast.Name) and b.id.endswith("Error") for b in node.bases)
    }
    assert defined == set()
    assert {"OptionError", "DatasetError", "CheckpointError", "EmptySplitError"} <= set(
        vars(segkit.errors)
    )


#: What the command line must not load before a command runs (each costs 0.05–0.5 s).
HEAVY = {"numpy", "scipy", "PIL", "torch", "pydantic"}


def test_cli_import_and_help_load_no_stage_libraries() -> None:
    # Start-up of `segkit --help`, `--version` and every `CMD --help` stays fast only
    # while the command modules import their stages inside the command body.
    commands = ("convert", "validate", "split", "weights", "train", "models", "export")
    commands += ("report", "predict", "demo", "run")
    helps = "; ".join(f"app([{c!r}, '--help'], standalone_mode=False)" for c in commands)
    assert not HEAVY & loaded_after("import segkit.cli")
    loaded = loaded_after(
        f"from segkit.cli import app; app(['--version'], standalone_mode=False); {helps}"
    )
    assert "segkit" in loaded
    assert not HEAVY & loaded


def _main_loads(*argv: str) -> set[str]:
    code = f"import sys; sys.argv = ['segkit', *{list(argv)!r}]\nfrom segkit.cli import main\n"
    run = "out, sys.stdout = sys.stdout, open('/dev/null', 'w')\ntry:\n    main()\n"
    return loaded_after(code + run + "except SystemExit:\n    pass\nsys.stdout = out")


def test_version_loads_no_typer_and_help_loads_no_rich() -> None:
    assert not {"typer", "click", "rich"} & _main_loads("--version")
    for argv in (["--help"], ["convert", "--help"], ["train", "-h"], []):
        assert not (HEAVY | {"rich"}) & _main_loads(*argv), argv


def test_a_command_built_alone_or_listed_has_the_help_of_the_whole_app() -> None:
    import typer.main

    from segkit.cli._app import COMMAND_MODULES, build_app

    def help_text(app: object, name: str | None) -> str:
        group = typer.main.get_command(app)  # type: ignore[arg-type]
        root = group.make_context("segkit", [], resilient_parsing=True)
        if name is None:
            return group.get_help(root)
        command = group.get_command(root, name)
        return command.get_help(command.make_context(name, [], parent=root, resilient_parsing=True))

    whole = build_app()
    assert help_text(build_app(listing=True), None) == help_text(whole, None)
    for name in COMMAND_MODULES:
        assert help_text(build_app(name), name) == help_text(whole, name), name
