"""The experiments: E1 target-matched weight, E2 one-shot saturation, E3 refresh vs one shot,
E5 the frontier.

Wiring only. Every training run is a cached stage (E1) or a whole cached bolt-round (E2, E5),
so re-running an experiment only redoes what changed; outputs go to runs/experiments/<name>/.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from bolt_tasks.analyses.answer_probability import answer_probability_task
from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.config import EvaluationConfig, RefreshConfig, WeightingConfig
from bolt_tasks.stages.evaluation import evaluate_task, score_samples_task
from bolt_tasks.analyses.experiment_config import (
    FrontierExperimentConfig, RefreshExperimentConfig, SaturationConfig, TargetMatchConfig,
)
from bolt_tasks.analyses.frontier import report_frontier_experiment_task
from bolt_tasks.stages.round_directory import RoundLayout, pipeline_lock
from bolt_tasks.analyses.refresh_comparison import report_refresh_comparison_task
from bolt_tasks.analyses.saturation import report_saturation_task
from bolt_tasks.analyses.target_match import Fit, fit_grid, report_target_match_task
from bolt_tasks.policy.training import train_task
from bolt_tasks.stages.weights import weights_task
from flows.refresh import bolt_refresh
from flows.round import bolt_round, round_rollouts


def _output_dir(runs_dir: str, name: str) -> str:
    return str(Path(runs_dir).resolve() / "experiments" / name)


@flow(name="bolt-experiment-e1")
def experiment_target_match(config: TargetMatchConfig = TargetMatchConfig(), runs_dir: str = "runs") -> dict:
    """E1: fit the same pi_ref rollouts with every weighting scheme over a beta grid."""
    runs_dir = str(Path(runs_dir).resolve())
    data = config.round
    layout = RoundLayout.of(runs_dir, data.pipeline, data.round)

    def cached(task, directory=layout.directory):
        return stored_in(task, directory)

    with pipeline_lock(runs_dir, data.pipeline):
        prompts, reference, _, rollouts, rewards = round_rollouts(data, runs_dir)
        reference_probs = cached(answer_probability_task)(prompts, reference,
                                                          layout.table("reference_answer_probability"))
        _, reference_samples = cached(evaluate_task)(
            prompts, reference, reference,
            EvaluationConfig(samples_per_prompt=config.heldout_samples, seed=data.evaluation.seed),
            data.task, layout.table("reference_eval"), layout.table("reference_samples"),
        )
        fits = []
        for scheme, beta in fit_grid(config.schemes, config.betas):
            fit_dir = layout.directory / "fits" / (scheme if beta is None else f"{scheme}-beta{beta:g}")
            weighting = WeightingConfig(scheme=scheme, beta=beta or 1.0,
                                        rft_threshold=data.weighting.rft_threshold)
            weights, _ = cached(weights_task, fit_dir)(
                rollouts, rewards, weighting, str(fit_dir / "weights.parquet"),
                str(fit_dir / "prompt_stats.parquet"),
            )
            policy, train_log = cached(train_task, fit_dir)(
                prompts, rollouts, weights, reference, data.training, str(fit_dir / "policy"),
                str(fit_dir / "train_log.parquet"),
            )
            fits.append(Fit(
                scheme, beta,
                cached(answer_probability_task, fit_dir)(prompts, policy, str(fit_dir / "answer_probability.parquet")),
                cached(score_samples_task, fit_dir)(rollouts, prompts, policy, str(fit_dir / "train_logprobs.parquet")),
                cached(score_samples_task, fit_dir)(reference_samples, prompts, policy,
                                                    str(fit_dir / "heldout_logprobs.parquet")),
                train_log,
            ))
    return cached(report_target_match_task)(
        config.model_dump(mode="json"), prompts, rollouts, rewards, reference_samples,
        reference_probs, fits, config.betas, data.evaluation.success_threshold,
        _output_dir(runs_dir, "e1"), runs_dir,
    )


@flow(name="bolt-experiment-e2")
def experiment_saturation(config: SaturationConfig = SaturationConfig(), runs_dir: str = "runs") -> dict:
    """E2: epochs at fixed N and N at fixed epochs, each point a whole bolt-round."""
    runs_dir = str(Path(runs_dir).resolve())
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
        summary = bolt_round(config=round_config, runs_dir=runs_dir)
        points.append(summary | {"samples_per_prompt": n, "epochs": epochs})
    return stored_in(report_saturation_task, _output_dir(runs_dir, "e2"))(
        config.model_dump(mode="json"), points, config.fixed_samples_per_prompt,
        config.fixed_epochs, _output_dir(runs_dir, "e2"), runs_dir,
    )


@flow(name="bolt-experiment-e5")
def experiment_frontier(
    config: FrontierExperimentConfig = FrontierExperimentConfig(), runs_dir: str = "runs"
) -> dict:
    """E5: the frontier over beta from one round's rollouts, with policies fitted at some betas."""
    runs_dir = str(Path(runs_dir).resolve())
    points = []
    for beta in config.trained_betas:
        round_config = config.round.model_copy(update={
            "pipeline": f"{config.round.pipeline}-beta{beta:g}",
            "weighting": config.round.weighting.model_copy(update={"beta": beta}),
        })
        points.append(bolt_round(config=round_config, runs_dir=runs_dir))
    # Every trained round sampled the same rollouts (same prompts, model and seed).
    first = RoundLayout.of(runs_dir, f"{config.round.pipeline}-beta{config.trained_betas[0]:g}", 0)
    return report_frontier_experiment_task(
        first.table("rollouts"), first.table("rewards"), config.betas, points,
        _output_dir(runs_dir, "e5"), runs_dir, config.model_dump(mode="json"),
    )


@flow(name="bolt-experiment-e3")
def experiment_refresh(config: RefreshExperimentConfig = RefreshExperimentConfig(), runs_dir: str = "runs") -> dict:
    """E3: K refreshed rounds of N/K samples against one round of N samples per prompt."""
    runs_dir = str(Path(runs_dir).resolve())
    base = config.round
    per_round = config.total_samples_per_prompt // config.rounds
    one_shot = bolt_round(config=base.model_copy(update={
        "pipeline": f"{base.pipeline}-oneshot",
        "sampling": base.sampling.model_copy(update={"samples_per_prompt": config.total_samples_per_prompt}),
    }), runs_dir=runs_dir)
    refreshed = bolt_refresh(config=RefreshConfig(
        round=base.model_copy(update={
            "pipeline": f"{base.pipeline}-refresh",
            "sampling": base.sampling.model_copy(update={"samples_per_prompt": per_round}),
        }),
        until_round=config.rounds - 1,
    ), runs_dir=runs_dir)
    return report_refresh_comparison_task(
        config.model_dump(mode="json"), one_shot, refreshed["rounds"], _output_dir(runs_dir, "e3"), runs_dir,
    )
