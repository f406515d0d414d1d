"""One Boltzmann projection round: prompts -> rollouts -> rewards -> weights -> policy -> eval.

Wiring only; each stage is a cached task in bolt_tasks/, keyed on its inputs and the code it
runs, with its cache records in the round directory.
"""

from __future__ import annotations

from contextlib import nullcontext

from prefect import flow

from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.catalogue import RoundDirectory, RunsDirectory
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.executors import LocalShards, RayShards, ShardRunners
from bolt_tasks.core.results import RoundOutputs, RoundRollouts, RoundSummary
from bolt_tasks.core.run_names import round_flow_run_name
from bolt_tasks.core.storage import ModelRef, TableRef
from bolt_tasks.core.tracking import run_failed_on_error
from bolt_tasks.policy.train_stage import train_task
from bolt_tasks.sampling.backends import shard_gpus, with_resolved_backend
from bolt_tasks.sampling.sample_stage import sample_task
from bolt_tasks.stages.comparison_stage import combine_task
from bolt_tasks.stages.evaluation_stage import evaluate_task, sample_logprobs_task
from bolt_tasks.stages.prompts_stage import prompts_task
from bolt_tasks.stages.round_directory import (
    check_inputs_task,
    check_round_task,
    claim_round_task,
)
from bolt_tasks.stages.round_report import report_round
from bolt_tasks.stages.round_tracking import (
    close_round_run_task,
    log_round_task,
    log_training_curve_task,
    open_round_run_task,
    run_page_task,
)
from bolt_tasks.stages.summary import summarize_task
from bolt_tasks.stages.verifiers_stage import score_task
from bolt_tasks.stages.weights_stage import information_task, weights_task
from flows.bootstrap import reference_policy
from flows.replay import replayed_weights, replays
from flows.sharding import gathered, prompt_shards, shard_paths


def round_task(task, runs: RunsDirectory, round_dir: RoundDirectory, round_index: int, what: str = ""):
    """The stage's task, cached in the round directory, its runs named by stage, round and
    what it works on (a policy, a shard)."""
    name = f"{task.name}-round-{round_index}{what}"
    return stored_in(task, round_dir.directory, runs.root).with_options(task_run_name=name)


@flow(name="bolt-round", flow_run_name=round_flow_run_name)
def bolt_round(config: RoundConfig = RoundConfig(), runs_dir: str = "runs") -> RoundSummary:
    """Sample N responses per prompt from pi_ref, score them, weight them by exp(r/beta)/Zhat(x)
    in SQL, fit the policy by weighted maximum likelihood, evaluate it on held-out prompts."""
    runs = RunsDirectory.at(runs_dir)
    with runs.pipeline(config.pipeline).lock():
        summary, _, _ = round_stages(config, runs)
    return summary


def round_inputs(config: RoundConfig, runs: RunsDirectory) -> TableRef:
    """Check the round's inputs and read its prompts, then claim its directory: a bad prompt
    file or verifier stops the round before anything is claimed or built."""
    config = with_resolved_backend(config)
    round_dir = runs.round(config.pipeline, config.round)
    check_round_task(config, round_dir)
    check_inputs_task(config, runs)
    prompts = round_task(prompts_task, runs, round_dir, config.round)(config.task, round_dir.table("prompts"))
    claim_round_task(config, round_dir)
    return prompts


def round_rollouts(
    config: RoundConfig, runs: RunsDirectory, prompts: TableRef, reference: ModelRef | None = None,
    sampler: ModelRef | None = None, shards: LocalShards | RayShards | None = None,
) -> RoundRollouts:
    """A round's scored rollouts: build pi_ref (unless given), sample from `sampler` (pi_ref when
    None), score; shard by shard on `shards` (the round's executor when None)."""
    config = with_resolved_backend(config)
    round_dir = runs.round(config.pipeline, config.round)

    def cached(task, what: str = ""):
        return round_task(task, runs, round_dir, config.round, what)

    reference = reference or reference_policy(config.reference, config.task, runs)
    sampler = sampler or reference
    with ShardRunners(config.execution, runs.root, config.sampling.tensor_parallel_size) if shards is None else nullcontext(shards) as shards:
        plan = prompt_shards(prompts, "train", config.sampling, config.sampling.batch_size,
                             config.sampling.samples_per_prompt)
        per_shard = "-{shard.name}" if len(plan) > 1 else ""  # filled in by Prefect from the task's shard
        rollout_parts = shards.map(cached(sample_task, f"-pi_{config.round}{per_shard}"), [
            dict(prompts=prompts, sampler=sampler, reference=reference, sampling=config.sampling,
                 task=config.task, round_index=config.round, out_path=path, shard=shard,
                 runs_root=str(runs.root))
            for shard, path in zip(plan, shard_paths(round_dir, "rollouts", plan))
        ], gpus=shard_gpus(config.sampling))
        reward_parts = shards.map(cached(score_task), [
            dict(prompts=prompts, rollouts=part, task=config.task, out_path=path)
            for part, path in zip(rollout_parts, shard_paths(round_dir, "rewards", plan))
        ])
    rollouts = gathered(rollout_parts, ("rollouts",), runs, round_dir)
    rewards = gathered(reward_parts, ("rewards",), runs, round_dir)
    return RoundRollouts(prompts, reference, sampler, rollouts, rewards)


def round_stages(
    config: RoundConfig, runs: RunsDirectory, reference: ModelRef | None = None,
    sampler: ModelRef | None = None, parent_run_id: str | None = None,
    previous_run_id: str | None = None, shards: LocalShards | RayShards | None = None,
) -> tuple[RoundSummary, ModelRef, ModelRef]:
    """The stages of round k: sample from `sampler` (pi_k; pi_ref when None), weight, fit a
    policy starting from the sampler, evaluate it. Without `reference`, pi_ref is bootstrapped
    after the prompts are read, so a bad prompt file stops the round before anything is built.
    The round's MLflow run is open from then until the round ends. Sharded stages run on
    `shards` (the round's executor when None). Returns (summary, fitted policy, reference)."""
    config = with_resolved_backend(config)
    prompts = round_inputs(config, runs)
    run_id = open_round_run_task(config, runs, runs.round(config.pipeline, config.round),
                                 parent_run_id, previous_run_id)
    with run_failed_on_error(runs, run_id):
        summary, policy, reference = _round_stages(config, runs, prompts, run_id, reference, sampler, shards)
        close_round_run_task(runs, run_id)
    return summary, policy, reference


def _round_stages(
    config: RoundConfig, runs: RunsDirectory, prompts: TableRef, run_id: str,
    reference: ModelRef | None, sampler: ModelRef | None, shards: LocalShards | RayShards | None,
) -> tuple[RoundSummary, ModelRef, ModelRef]:
    round_dir = runs.round(config.pipeline, config.round)

    def cached(task, what: str = ""):
        return round_task(task, runs, round_dir, config.round, what)

    with ShardRunners(config.execution, runs.root, config.sampling.tensor_parallel_size) if shards is None else nullcontext(shards) as shards:
        scored = round_rollouts(config, runs, prompts, reference, sampler, shards)
        replay = ()
        if replays(config):
            replay, weights, prompt_stats = replayed_weights(config, runs, round_dir, scored, cached)
            fit_rollouts = replay[0]
        else:
            fit_rollouts = scored.rollouts
            weights, prompt_stats = cached(weights_task)(
                scored.rollouts, scored.rewards, config.weighting, round_dir.table("weights"),
                round_dir.table("prompt_stats"),
            )
        information_task(prompt_stats, weights, config.weighting)
        policy, train_log = cached(train_task)(
            fit_rollouts, weights, scored.sampler, config.training, round_dir.policy,
            round_dir.table("train_log"), config.execution,
        )
        cached(log_training_curve_task)(runs, run_id, train_log)
        plan = prompt_shards(scored.prompts, "heldout", config.sampling, config.evaluation.batch_size,
                             config.evaluation.samples_per_prompt)
        evaluations = {}
        for name, model, label in (("reference", scored.reference, "pi_ref"),
                                   ("policy", policy, f"pi_{config.round + 1}")):
            per_shard = "-{shard.name}" if len(plan) > 1 else ""
            parts = shards.map(cached(evaluate_task, f"-{label}{per_shard}"), [
                dict(prompts=scored.prompts, model=model, reference=scored.reference,
                     evaluation=config.evaluation, task=config.task, out_path=out_path,
                     samples_path=samples_path, stop=config.sampling.stop, shard=shard,
                     store=str(runs.evaluations))
                for shard, out_path, samples_path in zip(
                    plan, shard_paths(round_dir, f"{name}_eval", plan),
                    shard_paths(round_dir, f"{name}_samples", plan))
            ], gpus=shard_gpus(config.sampling))
            evaluations[name] = gathered(parts, (f"{name}_eval", f"{name}_samples"), runs, round_dir)
    (reference_eval, reference_samples), (policy_eval, _) = evaluations["reference"], evaluations["policy"]
    policy_logprobs = cached(sample_logprobs_task)(
        reference_samples, policy, round_dir.table("reference_samples_policy_logprobs"),
        config.evaluation.batch_size,
    )
    evaluation = cached(combine_task)(
        reference_eval, policy_eval, reference_samples, policy_logprobs, config.weighting.beta,
        round_dir.table("eval"),
    )
    outputs = RoundOutputs(scored, weights, prompt_stats, policy, train_log, reference_eval,
                           policy_eval, policy_logprobs, evaluation, replay)
    summary = cached(summarize_task)(config, outputs, round_dir)
    cached(log_round_task)(config, summary, runs, run_id)
    summary = summary.model_copy(update={"mlflow_run_id": run_id, "tracking_uri": runs.tracking_uri(),
                                         "mlflow_run_page": run_page_task(runs, run_id)})
    report_round(summary)
    return summary, policy, scored.reference
