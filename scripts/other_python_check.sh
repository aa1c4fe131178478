#!/usr/bin/env bash
# The data half (convert, validate, split, weights and their CLI) on another Python.
#
#   bash scripts/other_python_check.sh python3.10
#
# CI runs everything on the Python that the CPU build of torch 2.13.0 is installed for;
# a CUDA build of torch for another Python is several GB, so this check installs
# segkit's dependencies without torch and runs the tests that do not need it.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:?usage: $0 PYTHON}"
venv="$(mktemp -d)/venv"
"$python" -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
python - <<'PY' > "$venv/requirements.txt"
import re
text = open("pyproject.toml", encoding="utf-8").read()
block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
for line in block.splitlines():
    spec = line.split("#")[0].strip().strip(",").strip('"')
    if spec and not spec.startswith(("torch", "kornia")):
        print(spec)
print("hypothesis\npytest\nlabelme==6.3.1")
PY
pip install -q -r "$venv/requirements.txt"
pip install -q --no-deps -e .
python --version
QT_QPA_PLATFORM=offscreen python -m pytest -q -p no:cacheprovider \
  tests/test_convert.py tests/test_cli_convert.py tests/test_labelme_io.py \
  tests/test_validate.py tests/test_cli_validate.py tests/test_split.py \
  tests/test_split_stage.py tests/test_cli_split.py tests/test_weights.py \
  tests/test_weights_stage.py tests/test_cli_weights.py tests/test_png.py tests/test_voc.py \
  tests/test_io.py tests/test_imagehash.py tests/test_dataset.py tests/test_parallel.py \
  tests/test_interrupts.py tests/test_ownership.py tests/test_convert_one_pass.py \
  tests/test_convert_walk.py tests/test_convert_parse_once.py tests/test_cli_exit.py \
  tests/test_parallel_start_methods.py
