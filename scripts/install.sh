#!/usr/bin/env bash
# Set up .venv for BOLT: PyTorch first (the CPU build when there is no NVIDIA GPU, so pip
# never pulls a multi-GB CUDA build onto a laptop), then the project. Re-running is cheap.
#   bash scripts/install.sh          the project
#   bash scripts/install.sh --test   the project and its test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if nvidia-smi -L >/dev/null 2>&1; then
        echo "installing torch $TORCH_VERSION (CUDA build: an NVIDIA GPU is present)"
        "${pip[@]}" install -q "torch==$TORCH_VERSION"
    else
        echo "installing torch $TORCH_VERSION (CPU build: no NVIDIA GPU)"
        # A CPU wheel this machine already has (pip find-links), else PyTorch's CPU index,
        # else PyPI (whose macOS and Windows wheels are CPU builds).
        "${pip[@]}" install -q "torch==$TORCH_VERSION+cpu" 2>/dev/null \
            || "${pip[@]}" install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
            || "${pip[@]}" install -q "torch==$TORCH_VERSION"
    fi
fi
echo "installing bolt-sft$extras"
"${pip[@]}" install -q -e ".$extras"
