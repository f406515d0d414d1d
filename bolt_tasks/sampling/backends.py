"""Sampler backends behind one interface: draw N responses per prompt with log q, and compute
the log-probs of given responses under a model at temperature 1 (log pi_ref of another
policy's samples).

Both take token ids and return token ids, so tokenisation and decoding stay in this process
and the two backends see exactly the same inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from bolt_tasks.core.config import (
    EVALUATION_FOLLOWS_SAMPLING,
    EvaluationConfig,
    RoundConfig,
    SamplingConfig,
)
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.modeling import load_policy
from bolt_tasks.sampling.decode import Generations, generate
from bolt_tasks.sampling.kv_budget import bounded_rows, device_memory
from bolt_tasks.sampling.seeds import positional_seeds, row_seeds
from bolt_tasks.sampling.vllm_backend import require_vllm_python, run_job, vllm_python
from bolt_tasks.sampling.vllm_worker import pass_key, split

GENERATION_ARRAYS = ("token_ids", "offsets", "logprobs", "finish_reasons")


class Sampler(Protocol):
    name: str

    def sample(self, model_path: str, prompt_ids: list[list[int]], sampling: SamplingConfig,
               log_path: Path | None = None, seeds: list[int] | None = None) -> Generations:
        """samples_per_prompt responses per prompt, prompt-major: rows p*N .. p*N + N - 1.
        `seeds`: one per prompt (sampling/seeds.py); by default from sampling.seed and the
        prompt's position."""

    def sample_passes(self, model_path: str, prompt_ids: list[list[int]], passes: list[SamplingConfig],
                      log_path: Path | None = None, seeds: list[int] | None = None) -> list[Generations]:
        """`sample` once per entry of `passes` (the same prompts and seeds, e.g. temperature-1
        samples and greedy responses), the model loaded once: one vLLM engine for all."""

    def response_logprobs(self, model_path: str, prompt_ids: list[list[int]],
              response_ids: list[list[int]], sampling: SamplingConfig,
              log_path: Path | None = None) -> np.ndarray:
        """log pi(response | prompt) at temperature 1, one per pair."""


class TransformersSampler:
    name = "transformers"

    def sample(self, model_path, prompt_ids, sampling, log_path=None, seeds=None) -> Generations:
        return self.sample_passes(model_path, prompt_ids, [sampling], log_path, seeds)[0]

    def sample_passes(self, model_path, prompt_ids, passes, log_path=None, seeds=None) -> list[Generations]:
        dtypes = {sampler_dtype(sampling) for sampling in passes}
        if len(dtypes) > 1:
            raise ValueError("the passes of one model load share its dtype")
        model, tokenizer = load_policy(model_path, dtype=getattr(torch, dtypes.pop()))
        return [self.sample_loaded(model, tokenizer, prompt_ids, sampling, seeds) for sampling in passes]

    @staticmethod
    def sample_loaded(model, tokenizer, prompt_ids, sampling, seeds) -> Generations:
        n = sampling.samples_per_prompt
        repeated = [ids for ids in prompt_ids for _ in range(n)]
        positions = max((len(ids) for ids in prompt_ids), default=0) + sampling.max_new_tokens
        rows = bounded_rows(rows_per_batch(sampling.batch_size, n), positions, model.config,
                            next(model.parameters()).element_size(), device_memory(model))
        return generate(
            model, tokenizer, repeated, sampling.temperature, sampling.max_new_tokens,
            rows, row_seeds(seeds_or_default(seeds, sampling, prompt_ids), n),
            description=f"sample {len(repeated)} responses", stop=sampling.stop,
        )

    def response_logprobs(self, model_path, prompt_ids, response_ids, sampling, log_path=None) -> np.ndarray:
        model, tokenizer = load_policy(model_path, dtype=getattr(torch, sampler_dtype(sampling)))
        return response_logprobs(
            model, prompt_ids, response_ids, tokenizer.pad_token_id,
            # the decode batches' boundaries, which are the shards': a shard computes one pass's bits
            batch_size=rows_per_batch(sampling.batch_size, sampling.samples_per_prompt),
            description=f"log pi_ref of {len(response_ids)} responses",
        )


class VllmSampler:
    name = "vllm"

    def sample(self, model_path, prompt_ids, sampling, log_path=None, seeds=None) -> Generations:
        return self.sample_passes(model_path, prompt_ids, [sampling], log_path, seeds)[0]

    def sample_passes(self, model_path, prompt_ids, passes, log_path=None, seeds=None) -> list[Generations]:
        result = self.sample_passes_job(model_path, prompt_ids, passes, log_path, seeds)
        return [generations({name: result[pass_key(i, name)] for name in GENERATION_ARRAYS})
                for i in range(len(passes))]

    @staticmethod
    def engine_settings(sampling: SamplingConfig) -> dict:
        return {
            "gpu_memory_utilization": sampling.gpu_memory_utilization,
            "max_num_seqs": sampling.batch_size,
            "tensor_parallel_size": sampling.tensor_parallel_size,
            "dtype": sampler_dtype(sampling),
        }

    @classmethod
    def sample_job(cls, model_path, prompt_ids, sampling, log_path=None, seeds=None) -> dict[str, np.ndarray]:
        """The worker's raw result of one pass, with its engine start-up and sampling seconds."""
        result = cls.sample_passes_job(model_path, prompt_ids, [sampling], log_path, seeds)
        return {name.removeprefix(pass_key(0, "")): array for name, array in result.items()}

    @classmethod
    def sample_passes_job(cls, model_path, prompt_ids, passes, log_path=None, seeds=None) -> dict[str, np.ndarray]:
        engine = cls.engine_settings(passes[0])
        if any(cls.engine_settings(sampling) != engine or sampling.seed != passes[0].seed for sampling in passes):
            raise ValueError("the passes of one vLLM job share its engine and seeds: batch size, GPU "
                             "memory share, tensor-parallel size and seed must be equal")
        settings = engine | {
            "max_new_tokens": max(sampling.max_new_tokens for sampling in passes), "seed": passes[0].seed,
            "passes": [{"samples_per_prompt": sampling.samples_per_prompt, "temperature": sampling.temperature,
                        "max_new_tokens": sampling.max_new_tokens, "stop": sampling.stop}
                       for sampling in passes],
        }
        responses = sum(len(prompt_ids) * sampling.samples_per_prompt for sampling in passes)
        return run_job(
            "sample", model_path, prompt_ids, settings, log_path=log_path,
            seeds=seeds_or_default(seeds, passes[0], prompt_ids),
            description=f"vLLM: sample {responses} responses",
        )

    def response_logprobs(self, model_path, prompt_ids, response_ids, sampling, log_path=None) -> np.ndarray:
        result = run_job(
            "logprobs", model_path, prompt_ids, self.engine_settings(sampling),
            responses=response_ids, log_path=log_path,
            description=f"vLLM: log pi_ref of {len(response_ids)} responses",
        )
        return result["logprobs"]


def prompts_per_batch(batch_size: int, samples_per_prompt: int) -> int:
    """Whole prompts per decode batch (at least one, whose samples may then span batches)."""
    return max(1, batch_size // samples_per_prompt)


def rows_per_batch(batch_size: int, samples_per_prompt: int) -> int:
    """Decode batches hold whole prompts: their boundaries fall where the prompts' do, so a
    shard that starts at a multiple of prompts_per_batch computes its rows in the very batches
    a single pass would (the same shapes, the same floating-point rounding)."""
    if batch_size < samples_per_prompt:  # a prompt's samples over several batches, evenly
        return max(d for d in range(1, batch_size + 1) if samples_per_prompt % d == 0)
    return prompts_per_batch(batch_size, samples_per_prompt) * samples_per_prompt


def seeds_or_default(seeds: list[int] | None, sampling: SamplingConfig, prompt_ids) -> list[int]:
    return seeds if seeds is not None else positional_seeds(sampling.seed, len(prompt_ids))


def generations(result: dict[str, np.ndarray]) -> Generations:
    return Generations(
        split(result["token_ids"], result["offsets"]), result["logprobs"],
        result["finish_reasons"].tolist(),
    )


SAMPLERS: dict[str, Sampler] = {"transformers": TransformersSampler(), "vllm": VllmSampler()}


def sampler_dtype(sampling: SamplingConfig) -> str:
    """The sampler's dtype: `auto` is bfloat16 on a CUDA GPU, float32 elsewhere."""
    if sampling.dtype != "auto":
        return sampling.dtype
    return "bfloat16" if torch.cuda.is_available() else "float32"


def resolve_backend(sampling: SamplingConfig) -> SamplingConfig:
    """The configuration with `auto` replaced by the backend and the dtype that will run, so
    cache keys and logged parameters name what actually sampled. Asking for vllm without it
    fails here, before any stage runs."""
    if sampling.backend == "vllm":
        require_vllm_python()
    sampling = sampling.model_copy(update={"dtype": sampler_dtype(sampling)})
    if sampling.backend != "auto":
        return sampling
    use_vllm = vllm_python() is not None and torch.cuda.is_available()
    return sampling.model_copy(update={"backend": "vllm" if use_vllm else "transformers"})


def with_resolved_backend(config: RoundConfig) -> RoundConfig:
    """The round configuration as it will run: its config.json, MLflow parameters and cache keys
    then say which backend sampled the rollouts and which the held-out evaluation."""
    sampling = resolve_backend(config.sampling)
    evaluation = config.evaluation.backend
    if evaluation == "same":
        evaluation = sampling.backend
    elif evaluation == "vllm":
        require_vllm_python()
    return config.model_copy(update={
        "sampling": sampling, "evaluation": config.evaluation.model_copy(update={"backend": evaluation})})


def evaluation_sampling(evaluation: EvaluationConfig, samples_per_prompt: int, temperature: float,
                        stop: list[str]) -> SamplingConfig:
    """The sampler settings of a held-out evaluation pass (temperature 0: greedy). Evaluation
    fields left empty (outside a round, which fills them) take SamplingConfig's defaults."""
    engine = {name: getattr(evaluation, name) for name in EVALUATION_FOLLOWS_SAMPLING
              if getattr(evaluation, name) is not None}
    settings = SamplingConfig(
        samples_per_prompt=samples_per_prompt, batch_size=evaluation.batch_size,
        seed=evaluation.seed, stop=stop, dtype="float32",  # a measurement: exact log-probs
        backend="transformers" if evaluation.backend == "same" else evaluation.backend, **engine)
    return settings.model_copy(update={"temperature": temperature})  # 0 is valid here: greedy


def sampler_for(sampling: SamplingConfig) -> Sampler:
    return SAMPLERS[resolve_backend(sampling).backend]


def shard_gpus(sampling: SamplingConfig) -> float:
    """GPUs one sampling shard uses where it runs on GPUs: the vLLM engine's tensor-parallel size,
    one for the transformers sampler."""
    return sampling.tensor_parallel_size if sampling.backend == "vllm" else 1
