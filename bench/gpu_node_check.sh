#!/usr/bin/env bash
# Every GPU check in one command, for a bare machine with one GPU (torch, transformers, pyarrow,
# rich; no network): bench/gpu_check.py (the packed and padded trainer in bf16, MFU at two
# micro-batch sizes, the decode loop, the loss checks), then bench/gpu_round.py (a whole small
# round through the stage functions, torchrun with NCCL on one GPU). pydantic and DuckDB, which
# the round needs and the image lacks, come as wheels from .whl/ (scripts/gpu_wheels.sh, run
# where PyPI is reachable). Results go to OUT_DIR (default bench-results/). At most 8 minutes.
#   bash bench/gpu_node_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    site="$(mktemp -d)"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:$site"  # only packages the image lacks: nothing of its own is shadowed
fi
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; fi
timeout 240 "$python" bench/gpu_check.py --out "$out/gpu_check.json" --time-budget-s 180
check=$?
timeout 240 "$python" bench/gpu_round.py --out "$out/gpu_round.json"
round=$?
echo "gpu_check exit $check, gpu_round exit $round"
[ "$check" -eq 0 ] && [ "$round" -eq 0 ]
