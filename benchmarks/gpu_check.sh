#!/usr/bin/env bash
# On a machine with a CUDA GPU: the tests marked `cuda`, a short `segkit train` with fp16,
# bf16, channels_last, --compile and --batch-size auto, and torchrun --nproc_per_node 1
# with NCCL; prints one summary line. Elsewhere it prints "no CUDA" and exits 0.
#   bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no CUDA"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=()
check() {  # check NAME COMMAND...
    local name=$1; shift
    if "$@" >"$work/$name.log" 2>&1; then results+=("$name ok"); else
        results+=("$name FAILED"); echo "--- $name"; tail -20 "$work/$name.log"; fi
}
"$PY" - "$work/data" <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from helpers_train import make_voc
make_voc(Path(sys.argv[1]), n_train=32, n_val=8, size=128)
PYEOF
train=("$PY" -m segkit train "$work/data" --model unet-small --epochs 2 --quiet --force)
check tests "$PY" -m pytest -q -p no:cacheprovider -m cuda
check fp16 "${train[@]}" -o "$work/fp16" --precision fp16 --batch-size 8
check bf16 "${train[@]}" -o "$work/bf16" --precision bf16 --channels-last on --batch-size 8
check compile "${train[@]}" -o "$work/compile" --compile --batch-size 8
check batch-auto "${train[@]}" -o "$work/auto" --batch-size auto
check torchrun-nccl "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 \
    -m segkit train "$work/data" -o "$work/ddp" --model unet-small --epochs 2 --quiet
failed=$(printf '%s\n' "${results[@]}" | grep -c FAILED)
echo "gpu_check: $(IFS=', '; echo "${results[*]}") — $([ "$failed" = 0 ] && echo all passed || echo "$failed failed")"
[ "$failed" = 0 ]
