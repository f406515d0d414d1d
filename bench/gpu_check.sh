#!/usr/bin/env bash
# The GPU check on a bare GPU machine: the project need not be installed (PYTHONPATH), and
# nvidia-smi's view of the card comes first. Arguments go to bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" bench/gpu_check.py "$@"
