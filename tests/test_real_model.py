"""The packaged SmolLM2-135M-Instruct end to end on a tiny configuration: conversion from GGUF,
chat template, sampling, math verification, weights, a LoRA step, merge, and a refreshed round
that samples the merged policy, with transformers and with vLLM (the CPU build). Fails, never
skips, when the model package (scripts/install.sh --real) or vLLM is missing."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cli_runs import bolt

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_process_left", "shared_prefect_server")]

TINY_REAL = [
    "--reference-model", "smollm2-135m-instruct", "--set", "task.source=reasoning_gym:chain_sum",
    "--set", 'task.source_options={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}',
    "--set", "task.verifier=math", "--train-prompts", "4", "--set", "task.heldout_prompts=2",
    "--samples-per-prompt", "2", "--set", "sampling.max_new_tokens=12", "--set", "sampling.batch_size=16",
    "--set", "evaluation.samples_per_prompt=8", "--set", "evaluation.max_new_tokens=12",
    "--set", "evaluation.batch_size=32", "--set", "training.batch_size=8", "--set", "training.epochs=1",
    "--set", "training.warmup_steps=0", "--set", 'training.lora={"rank": 4}',
    "--set", "weighting.train_without_information=true",
]


@pytest.fixture(scope="module")
def runs(smollm2_runs_dir):
    return smollm2_runs_dir


@pytest.mark.parametrize("backend", ["transformers", pytest.param("vllm", marks=pytest.mark.vllm)])
def test_a_refreshed_round_samples_the_merged_lora_policy(runs, backend, tmp_path):
    # Held-out evaluation stays on transformers: the vLLM evaluation path has its own round test
    # (test_vllm_sampler.py), and each vLLM job here starts an engine for the 135M model.
    # The transformers sampler runs round 0 only (the CPU's path to a merged LoRA policy); round 1
    # sampling that merge is vLLM's part, the GPU path, and costs another 40 s here per backend.
    until = 1 if backend == "vllm" else 0
    result = bolt("refresh", "--runs-dir", str(runs), "--pipeline", f"real-{backend}", "--until-round", str(until),
                  *TINY_REAL, "--set", f"sampling.backend={backend}",
                  "--set", "evaluation.backend=transformers", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Checking a model's inputs must not import Prefect before bolt's own server is up.
    assert "prefect - Starting temporary server" not in result.stdout + result.stderr
    [converted] = (runs / "reference").glob("converted-smollm2-135m-instruct-*")
    pipeline = runs / f"real-{backend}-refresh"
    round0, round1 = pipeline / "round-0", pipeline / "round-1"

    rollouts = pq.read_table(round0 / "rollouts.parquet").to_pylist()
    assert len(rollouts) == 8 and all(r["sampler_model"] == str(converted) for r in rollouts)
    assert all(r["prompt_text"].endswith("<|im_start|>assistant\n") for r in rollouts)  # chat template
    rewards = pq.read_table(round0 / "rewards.parquet").to_pylist()
    assert {r["verifier"] for r in rewards} == {"math"} and all(r["error"] is None for r in rewards)
    assert len(pq.read_table(round0 / "train_log.parquet")) == 1  # one optimizer step
    policy = round0 / "policy"
    assert (policy / "model.safetensors").exists() and not (policy / "adapter_config.json").exists()
    assert json.loads((policy / "config.json").read_text())["vocab_size"] == 49152

    if until == 0:
        assert not round1.exists()
        return
    second = pq.read_table(round1 / "rollouts.parquet")
    assert set(second["sampler_model"].to_pylist()) == {str(policy)}  # round 1 samples the merge
    assert (round1 / "vllm-sample.log").exists() == (backend == "vllm")
    summary = json.loads((round1 / "summary.json").read_text())
    for key in ("ref_accuracy", "policy_accuracy", "target_error", "mean_ess_fraction", "kl"):
        assert summary[key] is not None, key
    assert summary["verifier_errors"] == 0


def test_the_converted_model_is_an_ordinary_folder(runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    [converted] = (runs / "reference").glob("converted-smollm2-135m-instruct-*")
    model = AutoModelForCausalLM.from_pretrained(converted)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.chat_template and len(tokenizer) == 49152
    assert not any(Path(converted).glob("*.gguf"))
