"""The experiments: E1 target-matched weight, E2 one-shot saturation, E3 refresh vs one shot,
E5 the frontier.

Wiring only. Every training run is a cached stage (E1) or a whole cached bolt-round (E2, E5),
so re-running an experiment only redoes what changed; outputs go to runs/experiments/<name>/.
"""

from __future__ import annotations

from prefect import flow

from bolt_tasks.analyses.answer_probability import answer_probability_task
from bolt_tasks.analyses.experiment_config import (
    FrontierExperimentConfig,
    RefreshExperimentConfig,
    SaturationConfig,
    TargetMatchConfig,
)
from bolt_tasks.analyses.frontier import report_frontier_experiment_task
from bolt_tasks.analyses.refresh_comparison import report_refresh_comparison_task
from bolt_tasks.analyses.saturation import report_saturation_task
from bolt_tasks.analyses.target_match import Fit, fit_grid, report_target_match_task
from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import EvaluationConfig, RefreshConfig, WeightingConfig
from bolt_tasks.core.results import AnalysisResult
from bolt_tasks.core.run_names import experiment_flow_run_name
from bolt_tasks.policy.train_stage import train_task
from bolt_tasks.stages.evaluation_stage import evaluate_task, sample_logprobs_task
from bolt_tasks.stages.weights_stage import weights_task
from flows.refresh import bolt_refresh
from flows.round import bolt_round, round_inputs, round_rollouts


@flow(name="bolt-experiment-e1", flow_run_name=experiment_flow_run_name("E1 target match"))
def experiment_target_match(
    config: TargetMatchConfig = TargetMatchConfig(), runs_dir: str = "runs"
) -> AnalysisResult:
    """E1: fit the same pi_ref rollouts with every weighting scheme over a beta grid."""
    runs = RunsDirectory.at(runs_dir)
    data = config.round
    round_dir = runs.round(data.pipeline, data.round)

    def cached(task, directory=round_dir.directory):
        return stored_in(task, directory, runs.root)

    with runs.pipeline(data.pipeline).lock():
        scored = round_rollouts(data, runs, round_inputs(data, runs))
        prompts, reference, rollouts = scored.prompts, scored.reference, scored.rollouts
        reference_probs = cached(answer_probability_task)(
            prompts, reference, round_dir.table("reference_answer_probability"))
        _, reference_samples = cached(evaluate_task)(
            prompts, reference, reference,
            EvaluationConfig(samples_per_prompt=config.heldout_samples, seed=data.evaluation.seed),
            data.task, round_dir.table("reference_eval"), round_dir.table("reference_samples"),
        )
        fits = []
        for scheme, beta in fit_grid(config.schemes, config.betas):
            fit_dir = round_dir.fit(scheme if beta is None else f"{scheme}-beta{beta:g}")

            def fit_cached(task):
                return cached(task, fit_dir.directory)

            weighting = WeightingConfig(scheme=scheme, beta=beta or 1.0,
                                        rft_threshold=data.weighting.rft_threshold)
            weights, _ = fit_cached(weights_task)(
                rollouts, scored.rewards, weighting, fit_dir.table("weights"),
                fit_dir.table("prompt_stats"),
            )
            policy, train_log = fit_cached(train_task)(
                rollouts, weights, reference, data.training, fit_dir.policy, fit_dir.table("train_log"),
                data.execution,
            )
            fits.append(Fit(
                scheme, beta,
                fit_cached(answer_probability_task)(prompts, policy, fit_dir.table("answer_probability")),
                fit_cached(sample_logprobs_task)(rollouts, policy, fit_dir.table("train_logprobs")),
                fit_cached(sample_logprobs_task)(reference_samples, policy, fit_dir.table("heldout_logprobs")),
                train_log,
            ))
    return cached(report_target_match_task)(
        config.model_dump(mode="json"), prompts, rollouts, scored.rewards, reference_samples,
        reference_probs, fits, config.betas, data.evaluation.success_threshold,
        str(runs.experiment("e1")), runs,
    )


@flow(name="bolt-experiment-e2", flow_run_name=experiment_flow_run_name("E2 saturation"))
def experiment_saturation(config: SaturationConfig = SaturationConfig(), runs_dir: str = "runs") -> AnalysisResult:
    """E2: epochs at fixed N and N at fixed epochs, each point a whole bolt-round."""
    runs = RunsDirectory.at(runs_dir)
    grid = dict.fromkeys(
        [(config.fixed_samples_per_prompt, e) for e in config.epochs]
        + [(n, config.fixed_epochs) for n in config.samples_per_prompt]
    )
    points = []
    for n, epochs in grid:
        round_config = config.round.model_copy(update={
            "pipeline": f"{config.round.pipeline}-n{n}-epochs{epochs}",
            "sampling": config.round.sampling.model_copy(update={"samples_per_prompt": n}),
            "training": config.round.training.model_copy(update={"epochs": epochs}),
        })
        points.append((n, epochs, bolt_round(config=round_config, runs_dir=str(runs))))
    out_dir = runs.experiment("e2")
    return stored_in(report_saturation_task, out_dir, runs.root)(
        config.model_dump(mode="json"), points, config.fixed_samples_per_prompt,
        config.fixed_epochs, str(out_dir), runs,
    )


@flow(name="bolt-experiment-e5", flow_run_name=experiment_flow_run_name("E5 frontier"))
def experiment_frontier(
    config: FrontierExperimentConfig = FrontierExperimentConfig(), runs_dir: str = "runs"
) -> AnalysisResult:
    """E5: the frontier over beta from one round's rollouts, with policies fitted at some betas."""
    runs = RunsDirectory.at(runs_dir)
    points = []
    for beta in config.trained_betas:
        round_config = config.round.model_copy(update={
            "pipeline": f"{config.round.pipeline}-beta{beta:g}",
            "weighting": config.round.weighting.model_copy(update={"beta": beta}),
        })
        points.append(bolt_round(config=round_config, runs_dir=str(runs)))
    # Every trained round sampled the same rollouts (same prompts, model and seed).
    first = runs.round(f"{config.round.pipeline}-beta{config.trained_betas[0]:g}", 0)
    return report_frontier_experiment_task(
        first.table("rollouts"), first.table("rewards"), config.betas, points,
        str(runs.experiment("e5")), runs, config.model_dump(mode="json"),
    )


@flow(name="bolt-experiment-e3", flow_run_name=experiment_flow_run_name("E3 refresh vs one shot"))
def experiment_refresh(
    config: RefreshExperimentConfig = RefreshExperimentConfig(), runs_dir: str = "runs"
) -> AnalysisResult:
    """E3: K refreshed rounds of N/K samples against one round of N samples per prompt."""
    runs = RunsDirectory.at(runs_dir)
    base = config.round
    per_round = config.total_samples_per_prompt // config.rounds
    one_shot = bolt_round(config=base.model_copy(update={
        "pipeline": f"{base.pipeline}-oneshot",
        "sampling": base.sampling.model_copy(update={"samples_per_prompt": config.total_samples_per_prompt}),
    }), runs_dir=str(runs))
    refreshed = bolt_refresh(config=RefreshConfig(
        round=base.model_copy(update={
            "sampling": base.sampling.model_copy(update={"samples_per_prompt": per_round}),
        }),
        until_round=config.rounds - 1,
    ), runs_dir=str(runs))
    return report_refresh_comparison_task(
        config.model_dump(mode="json"), one_shot, refreshed.rounds, str(runs.experiment("e3")), runs,
    )
