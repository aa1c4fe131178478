#!/usr/bin/env bash
# Build a wheel, install it into a fresh virtual environment and run `segkit demo` from
# an empty folder: the sample data must come from the package, not from this checkout.
# Usage: scripts/fresh_install_check.sh [DEMO-OPTIONS...]   e.g. --epochs 1 --scenes 4
# Needs network access for pip (torch, the dependencies). Leaves nothing behind but
# prints the demo's summary; exits non-zero when any step fails.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
python -m pip install -q --upgrade pip build
python -m build -q --wheel --outdir "$work/dist" "$repo"
# torch first, pinned, as the README says: a bare range would pull another build.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu downloads the small CPU build instead.
pip install -q torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
pip install -q "$work"/dist/segkit-*.whl
mkdir "$work/empty"
cd "$work/empty"
segkit --version
segkit demo "$@"
echo "fresh install check: ok ($(python --version), $(ls "$work"/dist))"
