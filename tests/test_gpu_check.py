"""bench/gpu_check.py runs on a GPU machine only now and then, so CI runs its --dry-run (a tiny
Qwen2 on the CPU) the way the GPU image would: without prefect, mlflow, duckdb, vLLM, pydantic
or rich importable. Its FLOPs and MFU arithmetic, and its OOM and time-budget guard, are checked
against hand-computed cases."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
ABSENT = ("prefect", "mlflow", "duckdb", "vllm", "pydantic", "rich")
# A None entry in sys.modules makes `import name` (and its submodules) raise ModuleNotFoundError,
# while importlib.util.find_spec answers None: absent, as on the GPU image. (A meta-path finder
# that raises would break transformers' and accelerate's availability probes, which call
# find_spec on rich and mlflow and do not expect an exception.)
RUNNER = """
import runpy, sys
ABSENT = {absent!r}
imported = [name for name in ABSENT if name in sys.modules]
if imported:
    sys.exit(f"imported before the script started: {{imported}}")
for name in ABSENT:
    sys.modules[name] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.slow
def test_dry_run_without_the_orchestration_packages(tmp_path):
    out = tmp_path / "x.json"
    done = subprocess.run(
        [sys.executable, "-c", RUNNER.format(absent=ABSENT), str(SCRIPT), "--dry-run",
         "--out", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["dry_run"] and results["device"] == "cpu"
    assert results["torch"] and results["transformers"]
    training = results["training"]
    assert [(row["token_budget"], row["packed"], row["checkpointing"]) for row in training] == [
        (budget, packed, checkpointing) for budget in (128, 256) for packed in (False, True)
        for checkpointing in (False, True)]
    for row in training:
        assert isinstance(row["result"], dict), row
        assert row["result"]["tokens_per_second"] > 0 and row["result"]["mfu"] > 0
        # 32-token sequences (8 + 24); packed, groups of 4 hold their 8-token prompt once
        count = row["token_budget"] // 32
        saved = (count - -(-count // 4)) * 8 if row["packed"] else 0
        assert row["result"]["positions_per_step"] == count * 32 - saved
    for dtype in ("float32", "bfloat16"):
        sampler = results["sampler"][dtype]
        assert sampler["generated_tokens"] == 8 * 8  # EOS -1: every row runs the full length
        assert sampler["tokens_per_second"] > 0
    check = results["correctness"]
    assert check["passed"] and check["relative_difference"] <= 1e-4, check
    packing = results["packing"]
    assert packing["passed"] and packing["relative_difference"] <= 1e-4, packing
    assert "loss check" in done.stdout and "passed" in done.stdout


def test_flops_and_mfu_by_hand(gpu_check):
    # hidden 8, intermediate 16, heads 2 (head dim 4), 1 KV head, 1 layer, vocabulary 10:
    # q 8x8 + k 8x4 + v 8x4 + o 8x8 + gate, up, down 3 x 8x16 = 576; the tied head 10x8 = 80
    config = Qwen2Config(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=10,
                         tie_word_embeddings=True)
    assert gpu_check.matmul_parameters(Qwen2ForCausalLM(config)) == 656
    # 6 x 656 + 12 x 1 layer x 8 hidden x 16 positions = 3936 + 1536
    assert gpu_check.flops_per_token(656, 1, 8, 16) == 5472
    assert gpu_check.mfu(1000.0, 5472, 5.472e6) == 1.0
    # the Qwen2.5-0.5B shape (on the meta device: no memory): 24 layers x (2 x 896x896 +
    # 2 x 896x128 + 3 x 896x4864) = 357,826,560, plus the head 151936 x 896 = 136,134,656
    with torch.device("meta"):
        qwen = Qwen2ForCausalLM(gpu_check.qwen_config(dry_run=False))
    assert gpu_check.matmul_parameters(qwen) == 493_961_216
    assert sum(p.numel() for p in qwen.parameters()) == 494_032_768  # Qwen2.5-0.5B's 0.49B
    assert gpu_check.flops_per_token(493_961_216, 24, 896, 512) == 3_095_887_872


def test_oom_and_the_time_budget_are_recorded_and_the_run_goes_on(gpu_check):
    cpu, now = torch.device("cpu"), gpu_check.time.perf_counter()

    def out_of_memory():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def broken():
        raise ValueError("no")

    assert gpu_check.guarded(out_of_memory, cpu, now, 60) == "OOM"
    assert gpu_check.guarded(broken, cpu, now, 60) == "error: ValueError: no"
    assert gpu_check.guarded(lambda: {"tokens_per_second": 1.0}, cpu, now, 60) == {
        "tokens_per_second": 1.0}
    assert gpu_check.guarded(lambda: {}, cpu, now - 61, 60) == "skipped: time budget"
