"""One Boltzmann projection round: prompts -> rollouts -> rewards -> weights -> policy -> eval.

Wiring only; each stage is a cached task in bolt_tasks/, keyed on its inputs and the code it
runs, with its cache records in the round directory.
"""

from __future__ import annotations

from prefect import flow

from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.results import RoundOutputs, RoundRollouts, RoundSummary
from bolt_tasks.core.storage import ModelRef
from bolt_tasks.policy.training import train_task
from bolt_tasks.sampling.backends import with_resolved_backend
from bolt_tasks.sampling.rollouts import sample_task
from bolt_tasks.stages.comparison import combine_task
from bolt_tasks.stages.evaluation import evaluate_task, sample_logprobs_task
from bolt_tasks.stages.prompts import prompts_task
from bolt_tasks.stages.round_directory import check_inputs_task, check_round_task, claim_round_task
from bolt_tasks.stages.round_tracking import log_round_task
from bolt_tasks.stages.summary import summarize_task
from bolt_tasks.stages.verifiers import score_task
from bolt_tasks.stages.weights import weights_task
from flows.bootstrap import bootstrap_reference


@flow(name="bolt-round")
def bolt_round(config: RoundConfig = RoundConfig(), runs_dir: str = "runs") -> RoundSummary:
    """Sample N responses per prompt from pi_ref, score them, weight them by exp(r/beta)/Zhat(x)
    in SQL, fit the policy by weighted maximum likelihood, evaluate it on held-out prompts."""
    runs = RunsDirectory.at(runs_dir)
    with runs.pipeline(config.pipeline).lock():
        summary, _, _ = round_stages(config, runs)
    return summary


def round_rollouts(
    config: RoundConfig, runs: RunsDirectory, reference: ModelRef | None = None,
    sampler: ModelRef | None = None,
) -> RoundRollouts:
    """A round's scored rollouts: check the inputs and read the prompts before the round
    directory is claimed and pi_ref is built (a bad prompt file or verifier stops the round
    first), sample from `sampler` (pi_ref when None), score."""
    config = with_resolved_backend(config)
    round_dir = runs.round(config.pipeline, config.round)

    def cached(task):
        return stored_in(task, round_dir.directory)

    check_round_task(config, round_dir)
    check_inputs_task(config, runs)
    prompts = cached(prompts_task)(config.task, round_dir.table("prompts"))
    claim_round_task(config, round_dir)
    reference = reference or bootstrap_reference(config.reference, config.task, str(runs))
    sampler = sampler or reference
    rollouts = cached(sample_task)(
        prompts, sampler, reference, config.sampling, config.task, config.round,
        round_dir.table("rollouts"),
    )
    rewards = cached(score_task)(prompts, rollouts, config.task, round_dir.table("rewards"))
    return RoundRollouts(prompts, reference, sampler, rollouts, rewards)


def round_stages(
    config: RoundConfig, runs: RunsDirectory, reference: ModelRef | None = None,
    sampler: ModelRef | None = None, parent_run_id: str | None = None,
    previous_run_id: str | None = None,
) -> tuple[RoundSummary, ModelRef, ModelRef]:
    """The stages of round k: sample from `sampler` (pi_k; pi_ref when None), weight, fit a
    policy starting from the sampler, evaluate it. Without `reference`, pi_ref is bootstrapped
    after the prompts are read, so a bad prompt file stops the round before anything is built.
    Returns (summary, fitted policy, reference)."""
    config = with_resolved_backend(config)
    round_dir = runs.round(config.pipeline, config.round)

    def cached(task):
        return stored_in(task, round_dir.directory)

    scored = round_rollouts(config, runs, reference, sampler)
    weights, prompt_stats = cached(weights_task)(
        scored.rollouts, scored.rewards, config.weighting, round_dir.table("weights"),
        round_dir.table("prompt_stats"),
    )
    policy, train_log = cached(train_task)(
        scored.rollouts, weights, scored.sampler, config.training, round_dir.policy,
        round_dir.table("train_log"),
    )
    reference_eval, reference_samples = cached(evaluate_task)(
        scored.prompts, scored.reference, scored.reference, config.evaluation, config.task,
        round_dir.table("reference_eval"), round_dir.table("reference_samples"), config.sampling.stop,
    )
    policy_eval, _ = cached(evaluate_task)(
        scored.prompts, policy, scored.reference, config.evaluation, config.task,
        round_dir.table("policy_eval"), round_dir.table("policy_samples"), config.sampling.stop,
    )
    policy_logprobs = cached(sample_logprobs_task)(
        reference_samples, policy, round_dir.table("reference_samples_policy_logprobs"),
    )
    evaluation = cached(combine_task)(
        reference_eval, policy_eval, reference_samples, policy_logprobs, config.weighting.beta,
        round_dir.table("eval"),
    )
    outputs = RoundOutputs(scored, weights, prompt_stats, policy, train_log, reference_eval,
                           policy_eval, policy_logprobs, evaluation)
    summary = cached(summarize_task)(config, outputs, round_dir)
    tracking_uri = runs.tracking_uri()
    run_id = cached(log_round_task)(config, summary, runs, tracking_uri, parent_run_id, previous_run_id)
    summary = summary.model_copy(update={"mlflow_run_id": run_id, "tracking_uri": tracking_uri})
    return summary, policy, scored.reference
