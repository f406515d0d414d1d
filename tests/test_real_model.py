"""The packaged SmolLM2-135M-Instruct end to end on a tiny configuration: conversion from GGUF,
chat template, sampling, math verification, weights, a LoRA step, merge, and a refreshed round
whose vLLM sampler (the CPU build) samples the merged policy; and the transformers sampler, the
CPU's, on the converted model. Fails, never skips, when the model package
(scripts/install.sh --real) or vLLM is missing."""

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


@pytest.mark.vllm
def test_a_refreshed_round_samples_the_merged_lora_policy(runs, tmp_path):
    # Held-out evaluation stays on transformers: the vLLM evaluation path has its own round test
    # (test_vllm_sampler.py), and each vLLM job here starts an engine for the 135M model. Round 0's
    # stages after sampling do not depend on the sampler; the transformers sampler on this model
    # is the test below.
    result = bolt("refresh", "--runs-dir", str(runs), "--pipeline", "real-vllm", "--until-round", "1",
                  *TINY_REAL, "--set", "sampling.backend=vllm",
                  "--set", "evaluation.backend=transformers", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Checking a model's inputs must not import Prefect before bolt's own server is up.
    assert "prefect - Starting temporary server" not in result.stdout + result.stderr
    [converted] = (runs / "reference").glob("converted-smollm2-135m-instruct-*")
    pipeline = runs / "real-vllm-refresh"
    round0, round1 = pipeline / "round-0", pipeline / "round-1"

    rollouts = pq.read_table(round0 / "rollouts.parquet").to_pylist()
    assert len(rollouts) == 8 and all(r["sampler_model"] == f"reference/{converted.name}" for r in rollouts)
    assert all(r["prompt_text"].endswith("<|im_start|>assistant\n") for r in rollouts)  # chat template
    rewards = pq.read_table(round0 / "rewards.parquet").to_pylist()
    assert {r["verifier"] for r in rewards} == {"math"} and all(r["error"] is None for r in rewards)
    assert len(pq.read_table(round0 / "train_log.parquet")) == 1  # one optimizer step
    policy = round0 / "policy"
    assert (policy / "model.safetensors").exists() and not (policy / "adapter_config.json").exists()
    assert json.loads((policy / "config.json").read_text())["vocab_size"] == 49152

    second = pq.read_table(round1 / "rollouts.parquet")
    assert set(second["sampler_model"].to_pylist()) == {"real-vllm-refresh/round-0/policy"}  # the merge
    assert (round1 / "vllm-sample.log").exists()
    summary = json.loads((round1 / "summary.json").read_text())
    for key in ("ref_accuracy", "policy_accuracy", "target_error", "mean_ess_fraction", "kl"):
        assert summary[key] is not None, key
    assert summary["verifier_errors"] == 0


def test_the_transformers_sampler_samples_the_converted_model_in_its_chat_template(runs, tmp_path):
    """What `bolt run --config recipes/smollm2.json` samples with on a CPU, its log-probs those
    of a forward pass."""
    import numpy as np
    import pyarrow as pa
    import torch

    from bolt_tasks.core.catalogue import RunsDirectory
    from bolt_tasks.core.config import SamplingConfig, TaskConfig
    from bolt_tasks.policy.logprobs import response_logprobs
    from bolt_tasks.policy.model_files import converted_model
    from bolt_tasks.policy.modeling import load_policy
    from bolt_tasks.sampling.rollouts import sample_rollouts

    model_dir = str(converted_model(RunsDirectory.at(runs), "smollm2-135m-instruct"))
    prompts = pa.table({"prompt_id": ["a", "b"], "prompt": ["What is 2 + 3?", "7 - 4 ="],
                        "answer": ["5", "3"], "split": ["train", "train"],
                        "difficulty": pa.array([None, None], pa.int32())})
    sampling = SamplingConfig(samples_per_prompt=2, max_new_tokens=12, backend="transformers")
    rows = sample_rollouts(prompts, model_dir, model_dir, sampling, TaskConfig(), 0,
                           tmp_path / "rollouts.parquet").read().to_pylist()
    assert len(rows) == 4 and {r["sampler_model"] for r in rows} == {model_dir}
    assert all(r["prompt_text"].startswith("<|im_start|>") for r in rows)
    assert all(r["prompt_text"].endswith("<|im_start|>assistant\n") for r in rows)
    assert all(0 < r["num_tokens"] == len(r["response_token_ids"]) <= 12 for r in rows)
    model, tokenizer = load_policy(model_dir, torch.device("cpu"))
    expected = response_logprobs(model, [r["prompt_token_ids"] for r in rows],
                                 [r["response_token_ids"] for r in rows], tokenizer.pad_token_id)
    np.testing.assert_allclose([r["sampler_logprob"] for r in rows], expected, atol=1e-3, rtol=0)
    assert all(r["reference_logprob"] == r["sampler_logprob"] for r in rows)  # the sampler is pi_ref


def test_the_converted_model_is_an_ordinary_folder(runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    [converted] = (runs / "reference").glob("converted-smollm2-135m-instruct-*")
    model = AutoModelForCausalLM.from_pretrained(converted)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.chat_template and len(tokenizer) == 49152
    assert not any(Path(converted).glob("*.gguf"))
