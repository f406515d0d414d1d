"""One Boltzmann projection round: prompts -> rollouts -> rewards -> weights -> policy -> eval.

Wiring only; each stage is a cached task in bolt_tasks/, keyed on its inputs and source, with
its cache records in the round directory.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.stages.evaluation import combine_task, evaluate_task, score_samples_task
from bolt_tasks.stages.round_directory import RoundLayout, check_round_task, claim_round_task, pipeline_lock
from bolt_tasks.stages.prompts import prompts_task
from bolt_tasks.sampling.rollouts import sample_task
from bolt_tasks.sampling.backends import with_resolved_backend
from bolt_tasks.stages.summary import summarize_task
from bolt_tasks.core.storage import ModelRef, TableRef
from bolt_tasks.core.tracking import log_round_task, tracking_uri
from bolt_tasks.policy.training import train_task
from bolt_tasks.stages.verifiers import score_task
from bolt_tasks.stages.weights import weights_task
from flows.bootstrap import bootstrap_reference


@flow(name="bolt-round")
def bolt_round(config: RoundConfig = RoundConfig(), runs_dir: str = "runs") -> dict:
    """Sample N responses per prompt from pi_ref, score them, weight them by exp(r/beta)/Zhat(x)
    in SQL, fit the policy by weighted maximum likelihood, evaluate it on held-out prompts."""
    runs_dir = str(Path(runs_dir).resolve())
    with pipeline_lock(runs_dir, config.pipeline):
        summary, _, _ = round_stages(config, runs_dir)
    return summary


def round_rollouts(
    config: RoundConfig, runs_dir: str, reference: ModelRef | None = None,
    sampler: ModelRef | None = None,
) -> tuple[TableRef, ModelRef, ModelRef, TableRef, TableRef]:
    """A round's scored rollouts: claim the round directory, read the prompts (before pi_ref is
    built, so a bad prompt file stops the round first), sample from `sampler` (pi_ref when
    None), score. Returns (prompts, reference, sampler, rollouts, rewards)."""
    config = with_resolved_backend(config)
    layout = RoundLayout.of(runs_dir, config.pipeline, config.round)

    def cached(task):
        return stored_in(task, layout.directory)

    check_round_task(config, runs_dir)
    prompts = cached(prompts_task)(config.task, layout.table("prompts"))
    claim_round_task(config, runs_dir)
    reference = reference or bootstrap_reference(config.reference, config.task, runs_dir)
    sampler = sampler or reference
    rollouts = cached(sample_task)(
        prompts, sampler, reference, config.sampling, config.round, layout.table("rollouts")
    )
    rewards = cached(score_task)(prompts, rollouts, config.task, layout.table("rewards"))
    return prompts, reference, sampler, rollouts, rewards


def round_stages(
    config: RoundConfig, runs_dir: str, reference: ModelRef | None = None,
    sampler: ModelRef | None = None, parent_run_id: str | None = None,
    previous_run_id: str | None = None,
) -> tuple[dict, ModelRef, ModelRef]:
    """The stages of round k: sample from `sampler` (pi_k; pi_ref when None), weight, fit a
    policy starting from the sampler, evaluate it. Without `reference`, pi_ref is bootstrapped
    after the prompts are read, so a bad prompt file stops the round before anything is built.
    Returns (summary, fitted policy, reference)."""
    config = with_resolved_backend(config)
    layout = RoundLayout.of(runs_dir, config.pipeline, config.round)

    def cached(task):
        return stored_in(task, layout.directory)

    prompts, reference, sampler, rollouts, rewards = round_rollouts(
        config, runs_dir, reference, sampler
    )
    weights, prompt_stats = cached(weights_task)(
        rollouts, rewards, config.weighting, layout.table("weights"), layout.table("prompt_stats")
    )
    policy, train_log = cached(train_task)(
        prompts, rollouts, weights, sampler, config.training, layout.policy,
        layout.table("train_log"),
    )
    reference_eval, reference_samples = cached(evaluate_task)(
        prompts, reference, reference, config.evaluation, config.task,
        layout.table("reference_eval"), layout.table("reference_samples"),
    )
    policy_eval, _ = cached(evaluate_task)(
        prompts, policy, reference, config.evaluation, config.task,
        layout.table("policy_eval"), layout.table("policy_samples"),
    )
    policy_logprobs = cached(score_samples_task)(
        reference_samples, prompts, policy, layout.table("reference_samples_policy_logprobs")
    )
    evaluation = cached(combine_task)(
        reference_eval, policy_eval, reference_samples, policy_logprobs, config.weighting.beta,
        layout.table("eval"),
    )
    outputs = {
        "prompts": prompts, "reference": reference, "sampler": sampler, "rollouts": rollouts,
        "rewards": rewards, "weights": weights, "prompt_stats": prompt_stats, "policy": policy,
        "train_log": train_log, "reference_eval": reference_eval, "policy_eval": policy_eval,
        "policy_logprobs": policy_logprobs, "eval": evaluation,
    }
    summary = cached(summarize_task)(config, outputs, str(layout.directory))
    tracking = tracking_uri(runs_dir)
    run_id = cached(log_round_task)(
        config, summary, str(layout.directory), runs_dir, tracking, parent_run_id, previous_run_id
    )
    return summary | {"mlflow_run_id": run_id, "tracking_uri": tracking}, policy, reference
