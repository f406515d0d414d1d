"""Configuration of a BOLT round as pydantic models.

Every field carries help text: these models are the Prefect UI's parameter forms and the
reference for what each knob does (docs/DESIGN.md section 1 holds the math they refer to).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from bolt_tasks.core.catalogue import refresh_pipeline_name
from bolt_tasks.core.config_execution import ExecutionConfig
from bolt_tasks.core.config_task import (  # noqa: F401  (TaskConfig belongs to a round)
    BETA_RANGE,
    BUILTIN_PROMPTS,
    MAX_ABS_REWARD,
    TaskConfig,
    _Frozen,
)
from bolt_tasks.core.config_training import LoraConfig, TrainingConfig  # noqa: F401  (part of a round)
from bolt_tasks.core.errors import BoltInputError


class ReferenceConfig(_Frozen):
    """The reference policy pi_ref, either built here or loaded from a directory or hub id."""

    model: str | None = Field(
        None,
        description="Local model directory or hub id loaded with AutoModelForCausalLM. Empty: "
        "build the embedded reference policy (a small llama-type LM trained on the built-in task).",
    )
    steps: int = Field(1500, ge=1, description="Bootstrap training steps of the embedded policy.")
    batch_size: int = Field(256, ge=1, description="Bootstrap batch size (sequences).")
    learning_rate: float = Field(3e-3, gt=0, description="Bootstrap peak learning rate (AdamW).")
    label_noise: tuple[float, float, float] = Field(
        (0.10, 0.55, 0.90),
        description="Probability that a bootstrap label has one wrong digit, for 0/1/2 carries. "
        "The policy learns the right answer as its mode but samples wrong ones at about this "
        "rate, so a reward tilt has something to find (docs/DESIGN.md, 'The built-in task').",
    )
    seed: int = Field(0, description="Seed of the bootstrap initialisation and data.")


class SamplingConfig(_Frozen):
    """Reference sampling: N responses per training prompt."""

    samples_per_prompt: int = Field(8, ge=1, description="N, responses sampled per prompt.")
    temperature: float = Field(
        1.0,
        gt=0,
        description="Sampling temperature. Not 1 means the sampler q differs from pi_ref; the "
        "stored sampler log-prob is then log q and the weights importance-correct for it.",
    )
    max_new_tokens: int = Field(5, ge=1, description="Longest response, in tokens (EOS included).")
    stop: list[str] = Field(
        [], description="Stop strings: a response ends at the first one it writes (kept in the "
        "response; finish reason stop), as at EOS. Held-out evaluation uses them too.",
    )
    batch_size: int = Field(1024, ge=1, description="Sequences generated per forward batch.")
    seed: int = Field(0, description="Sampling seed: the same seed gives the same rollouts.")
    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto",
        description="Who samples the rollouts. transformers: BOLT's own decode loop. "
        "vllm: a vLLM engine in a process of its own (released when sampling ends). "
        "auto: vllm when vLLM is installed and a GPU is present, else transformers. The two "
        "backends draw different samples from the same distribution for the same seed.",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="The sampler's weights and activations (both backends): auto is bfloat16 on "
        "a CUDA GPU and float32 elsewhere. pi_ref is the reference model as this sampler "
        "computes it: the rollouts' sampler and reference log-probs both come from it, in this "
        "dtype, so the weights are exact for that definition (docs/DESIGN.md, \"The sampler's "
        "dtype\"). Held-out evaluation always runs in float32.",
    )
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1,
        description="vllm backend on a GPU: share of GPU memory the engine may take.",
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="vllm backend: GPUs the engine shards the model over (vLLM tensor "
        "parallelism).",
    )
    shards: int = Field(
        1, ge=1,
        description="Split the prompts into this many shards for sampling, scoring and held-out "
        "evaluation: each shard is its own cached task writing its own part (a crash loses one "
        "shard's work), run in turn here or side by side on Ray (execution.executor). The rows "
        "do not depend on it: every prompt has its own random stream.",
    )
    prompts_per_shard: int | None = Field(
        None, ge=1, description="Instead of `shards`: at most this many prompts per shard.",
    )


WEIGHTING_SCHEMES = ("bolt", "boltzmann_global", "rft", "reward", "sft")


class WeightingConfig(_Frozen):
    """How rollouts are weighted (docs/DESIGN.md section 1; each scheme is one expression in
    sql/log_tilt.sql). BOLT: w = exp(r/beta)/Zhat(x), normalised per prompt."""

    scheme: Literal["bolt", "boltzmann_global", "rft", "reward", "sft"] = Field(
        "bolt",
        description="bolt: exp(r/beta)/Zhat(x) per prompt, with the importance term "
        "log pi_ref - log q when the sampler is not pi_ref (fits pi*). boltzmann_global: "
        "exp(r/beta) over one global mean (fits pi* per prompt, reweights prompts). rft: 1 "
        "for r >= rft_threshold, else 0 (rejection-sampling fine-tuning, the beta -> 0 limit). "
        "reward: w = r (r >= 0). sft: w = 1 (refits the sampler).",
    )
    beta: float = Field(
        0.5,
        description="KL temperature beta > 0 of J = E[r] - beta*KL(pi||pi_ref). Small beta tilts "
        "hard toward reward; large beta stays near pi_ref.",
    )
    success_threshold: float | None = Field(
        None,
        description="Reward at or above which a response counts as a success for coverage. "
        "Empty: the top reward seen in the rollouts if it is above 0 (1 for 0/1 rewards); "
        "where nothing is rewarded, nothing is a success.",
    )
    zero_information_keep: float = Field(
        0.25, ge=0, le=1,
        description="rho: a prompt whose weights are all equal (every reward alike, sampled from "
        "pi_ref) adds only SFT on the sampler's own samples; it is trained on with probability "
        "rho, weighted 1/rho, so the expected loss is unchanged and the fit costs less. 1: every "
        "prompt, the bits of the full table. 0: none of them, which is biased (the fit no longer "
        "anchors those prompts to the sampler). 0.25 was chosen from measurements "
        "(docs/benchmarks.md, 'Prompts that teach nothing'). The sft scheme always keeps every "
        "prompt: it is the baseline that refits the sampler on the whole table.",
    )
    zero_information_seed: int = Field(0, description="Seed of the zero-information draw (rho < 1).")
    replay_rounds: int = Field(
        0, ge=0,
        description="bolt scheme, refreshed round k: also train on the samples of the R rounds "
        "before it (same prompts), scored under every sampler of the pool and weighted by "
        "multiple importance sampling (the balance heuristic), toward the same target as a fresh "
        "round. 0: the round's own samples only.",
    )
    min_informative_share: float = Field(
        0.0, ge=0, le=1,
        description="A round in which the share of training prompts with unequal weights is 0 or "
        "below this stops after scoring, before training, saying what to try.",
    )
    train_without_information: bool = Field(
        False, description="Train even when the round has nothing to learn (min_informative_share).",
    )
    rft_threshold: float = Field(
        1.0, description="rft scheme only: keep responses with reward >= this, drop the rest."
    )
    eta: float | None = Field(
        None, gt=0,
        description="bolt scheme: reward step eta of KL mirror descent, l = eta*r + alpha*(log "
        "pi_ref - log q). Empty: 1/beta, which with alpha = 1 is one exact step to pi*.",
    )
    alpha: float = Field(
        1.0, ge=0, le=1,
        description="bolt scheme: anchor to pi_ref. Refreshed round k fits pi_(k+1) ∝ "
        "pi_k^(1-alpha) pi_ref^alpha exp(eta r): alpha = 1 re-targets pi* from a better-covering "
        "sampler; alpha = 0 is pure reward tilting of the current policy.",
    )

    @field_validator("beta")
    @classmethod
    def _beta_positive_and_finite(cls, beta: float) -> float:
        low, high = BETA_RANGE
        if not math.isfinite(beta) or not low <= beta <= high:
            raise ValueError(f"beta must be a finite number in [{low:g}, {high:g}], so that r/beta "
                             f"stays finite for rewards up to {MAX_ABS_REWARD:g} in size")
        return beta

    @field_validator("eta")
    @classmethod
    def _eta_in_range(cls, eta: float | None) -> float | None:
        if eta is not None and not 1 / BETA_RANGE[1] <= eta <= 1 / BETA_RANGE[0]:
            raise ValueError(f"eta must be in [{1 / BETA_RANGE[1]:g}, {1 / BETA_RANGE[0]:g}]")
        return eta


class EvaluationConfig(_Frozen):
    """Held-out evaluation of pi_ref and the fitted policy."""

    samples_per_prompt: int = Field(
        64, ge=8, description="Samples per held-out prompt at temperature 1 (accuracy, KL, p*)."
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Longest evaluated response, in tokens. Empty: the round's "
        "sampling.max_new_tokens, so held-out answers are not cut shorter than the rollouts.")
    batch_size: int = Field(2048, ge=1, description="Sequences per forward batch.")
    seed: int = Field(1, description="Evaluation sampling seed.")
    success_threshold: float = Field(
        1.0, description="Reward at or above which a held-out sample counts as correct."
    )
    backend: Literal["same", "transformers", "vllm"] = Field(
        "same", description="Who samples the held-out responses (temperature 1 and greedy): "
        "same (the round's sampling backend), transformers or vllm.",
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="vllm backend on a GPU: share of GPU memory the evaluation "
        "engine may take. Empty: the round's sampling.gpu_memory_utilization.")
    tensor_parallel_size: int | None = Field(
        None, ge=1, description="vllm backend: GPUs the evaluation engine shards the model over. "
        "Empty: the round's sampling.tensor_parallel_size.")


# Evaluation fields that follow the round's sampling settings unless set (RoundConfig fills them).
EVALUATION_FOLLOWS_SAMPLING = ("max_new_tokens", "gpu_memory_utilization", "tensor_parallel_size")


class RoundConfig(_Frozen):
    """One Boltzmann projection round: sample, score, weight, fit, evaluate."""

    pipeline: str = Field(
        "default",
        description="Pipeline name: tables go to runs/<pipeline>/round-<k>/. Letters, digits, "
        "'_', '.' and '-', starting with a letter, digit or '_'.",
    )
    round: int = Field(0, ge=0, description="Round index k (0 samples from pi_ref).")
    task: TaskConfig = Field(default_factory=TaskConfig)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    weighting: WeightingConfig = Field(default_factory=WeightingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)

    @model_validator(mode="before")
    @classmethod
    def _evaluation_follows_sampling(cls, data):
        """Fill the evaluation fields left empty from the round's sampling settings, so a round's
        configuration (its config.json, its cache keys, its form) states every value it ran."""
        if not isinstance(data, dict):
            return data
        sampling, evaluation = data.get("sampling") or {}, data.get("evaluation") or {}
        sampling = sampling.model_dump() if isinstance(sampling, BaseModel) else dict(sampling)
        evaluation = evaluation.model_dump() if isinstance(evaluation, BaseModel) else dict(evaluation)
        for name in EVALUATION_FOLLOWS_SAMPLING:
            if evaluation.get(name) is None:
                evaluation[name] = sampling.get(name, SamplingConfig.model_fields[name].default)
        return data | {"evaluation": evaluation}

    @model_validator(mode="after")
    def _ray_training_runs_on_the_ray_cluster(self):
        if self.training.launcher == "ray" and self.execution.executor != "ray":
            raise ValueError("training.launcher=ray trains on the Ray cluster of the round: set "
                             "execution.executor=ray (and execution.ray_address for a cluster)")
        return self

    @field_validator("pipeline")
    @classmethod
    def _pipeline_is_a_directory_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise ValueError("a pipeline name is a directory name under the runs directory: "
                             "letters, digits, '_', '.' and '-', not starting with '.' or '-'")
        return name


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validated(model: type[BaseModel], data, what: str = "configuration", prefix: str = ""):
    """model.model_validate(data), with pydantic's error turned into one sentence that names
    each bad field (dotted, after `prefix`) and the value it got."""
    if not isinstance(data, dict):
        raise BoltInputError(f"invalid {what}: expected a JSON object of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"field '{prefix}{'.'.join(str(p) for p in e['loc'])}': "
            f"{e['msg'].removeprefix('Value error, ')} (got {_short(e.get('input'))})"
            for e in error.errors()
        )
        raise BoltInputError(f"invalid {what}: {problems}") from None


def validate_round_config(data: dict) -> RoundConfig:
    """Build a RoundConfig, turning pydantic's error into one naming each bad field."""
    return validated(RoundConfig, data)


class RefreshConfig(_Frozen):
    """Refreshed rounds (KL policy mirror descent): round k samples from pi_k, fits pi_(k+1)
    starting from pi_k. Invoked again, the pipeline continues after its last completed round."""

    round: RoundConfig = Field(
        default_factory=lambda: RoundConfig(pipeline=refresh_pipeline_name("default")),
        description="Configuration of every round (its `round` index is set per round). "
        "weighting.eta and weighting.alpha are the mirror-descent step and anchor. The "
        "pipeline name gets '-refresh' appended unless it ends with it: refreshed rounds never "
        "share a one-shot round's directory.",
    )
    add_rounds: int = Field(
        1, ge=1, description="Rounds this invocation adds after the last completed one "
        "(a scheduled run adds this many).",
    )
    until_round: int | None = Field(
        None, ge=0, description="Instead of add_rounds: complete every round up to this index.",
    )

    @model_validator(mode="before")
    @classmethod
    def _refresh_pipeline(cls, data):
        if not isinstance(data, dict) or "round" not in data:
            return data
        round_config = data["round"]
        if isinstance(round_config, RoundConfig):
            round_config = round_config.model_copy(
                update={"pipeline": refresh_pipeline_name(round_config.pipeline)})
        elif isinstance(round_config, dict):
            round_config = round_config | {
                "pipeline": refresh_pipeline_name(round_config.get("pipeline", "default"))}
        return data | {"round": round_config}
