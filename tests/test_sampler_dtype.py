"""The sampler's dtype (sampling.dtype) and the checkpoint's (training.checkpoint_dtype)."""

import pyarrow as pa
import pytest
import torch
from safetensors import safe_open

from bolt_tasks.core.config import EvaluationConfig, SamplingConfig, TrainingConfig
from bolt_tasks.sampling.backends import (
    TransformersSampler,
    evaluation_sampling,
    resolve_backend,
    sampler_dtype,
)


def test_auto_is_float32_without_a_gpu_and_resolved_for_the_cache_key():
    assert not torch.cuda.is_available()
    assert sampler_dtype(SamplingConfig()) == "float32"
    assert resolve_backend(SamplingConfig()).dtype == "float32"
    assert resolve_backend(SamplingConfig(dtype="bfloat16")).dtype == "bfloat16"
    assert evaluation_sampling(EvaluationConfig(), 8, 1.0, []).dtype == "float32"  # a measurement


def test_a_bf16_sampler_is_importance_corrected_to_the_float32_reference(tiny_model_dir, tmp_path):
    """Round 0 with a bf16 sampler: sampler_logprob is what the bf16 decode drew with, and
    reference_logprob is pi_ref in float32 (not a copy), so log pi_ref - log q is the correction
    the weights need; in float32 the two are the same numbers and copied."""
    from bolt_tasks.core.config import TaskConfig
    from bolt_tasks.sampling.rollouts import sample_rollouts
    from bolt_tasks.stages.prompts import write_prompts

    task = TaskConfig(train_prompts=4, heldout_prompts=2)
    prompts = write_prompts(task, tmp_path / "prompts.parquet").read()
    tables = {}
    for dtype in ("float32", "bfloat16"):
        sampling = SamplingConfig(samples_per_prompt=4, dtype=dtype)
        tables[dtype] = sample_rollouts(prompts, tiny_model_dir, tiny_model_dir, sampling, task, 0,
                                        tmp_path / f"{dtype}.parquet").read()
    exact = tables["float32"]
    assert exact["sampler_logprob"].to_pylist() == exact["reference_logprob"].to_pylist()
    bf16 = tables["bfloat16"]
    correction = (bf16["reference_logprob"].to_numpy() - bf16["sampler_logprob"].to_numpy())
    rescored = TransformersSampler().response_logprobs(
        tiny_model_dir, bf16["prompt_token_ids"].to_pylist(), bf16["response_token_ids"].to_pylist(),
        SamplingConfig(samples_per_prompt=4))
    print(f"bf16 sampler: largest |log pi_ref - log q| {abs(correction).max():.2e}")
    assert abs(correction).max() > 1e-4  # the bf16 sampler is not pi_ref: a correction is needed
    assert abs(bf16["reference_logprob"].to_numpy() - rescored).max() < 1e-5  # pi_ref: float32


def test_a_checkpoint_is_saved_in_the_dtype_asked(tiny_model_dir, tmp_path):
    from bolt_tasks.policy.training import train_policy

    keys = {"prompt_id": ["a", "a"], "sample_idx": [0, 1]}
    table = pa.table(keys | {"prompt_token_ids": [[5, 6], [5, 6]], "response_token_ids": [[7, 2], [8, 2]]})
    weights = pa.table(keys | {"weight": [1.5, 0.5]})
    for dtype in ("float32", "bfloat16"):
        train_policy(table, weights, tiny_model_dir,
                     TrainingConfig(epochs=1, batch_size=2, warmup_steps=0, checkpoint_dtype=dtype),
                     tmp_path / dtype, tmp_path / f"{dtype}.parquet")
        with safe_open(str(tmp_path / dtype / "model.safetensors"), "pt") as saved:
            dtypes = {saved.get_tensor(name).dtype for name in saved.keys()}
        assert dtypes == {getattr(torch, dtype)}, dtypes


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(ValueError):
        SamplingConfig(dtype=dtype)
