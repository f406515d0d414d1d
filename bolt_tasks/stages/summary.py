"""Round summary: summary.json and the round's plots, from its tables."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.catalogue import RoundDirectory
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.duck import connect, sql_text, view
from bolt_tasks.core.results import RoundOutputs, RoundSummary, StageSeconds, TrainingDataFigures
from bolt_tasks.core.storage import write_text_atomic
from bolt_tasks.stages.comparison import heldout_summary
from bolt_tasks.stages.round_plots import loss_plot, success_rate_plot, weights_plot
from bolt_tasks.stages.weights import summarize_prompt_stats


def training_data_summary(outputs: RoundOutputs) -> TrainingDataFigures:
    """Sampling, scoring and weighting statistics of the round's training rollouts."""
    connection = connect()
    view(connection, "rollouts", outputs.scored.rollouts.path)
    view(connection, "rewards", outputs.scored.rewards.path)
    rollout_stats = connection.sql(sql_text("rollout_stats")).to_arrow_table().to_pylist()[0]
    return TrainingDataFigures(**rollout_stats, **summarize_prompt_stats(outputs.prompt_stats.path))


def stage_seconds(outputs: RoundOutputs) -> StageSeconds:
    """Each stage's time in this round. pi_ref built before this round's prompts were read was
    built for an earlier round or another pipeline and reused here: 0 s."""
    reference = outputs.scored.reference
    built_here = reference.finished_at >= outputs.scored.prompts.finished_at
    return StageSeconds(
        prompts=outputs.scored.prompts.seconds,
        bootstrap=reference.seconds if built_here else 0.0,
        sampling=outputs.scored.rollouts.seconds,
        scoring=outputs.scored.rewards.seconds,
        weights=outputs.weights.seconds,
        training=outputs.policy.seconds,
        evaluation=round(
            outputs.reference_eval.seconds + outputs.policy_eval.seconds
            + outputs.policy_logprobs.seconds + outputs.eval.seconds, 3,
        ),
        replay=round(sum(table.seconds for table in outputs.replay), 3),
    )


def summarize_round(config: RoundConfig, outputs: RoundOutputs, round_dir: RoundDirectory) -> RoundSummary:
    """Everything `bolt run` reports, from the round's tables."""
    beta = config.weighting.beta
    summary = RoundSummary(
        pipeline=config.pipeline, round=config.round, beta=beta,
        **heldout_summary(outputs.eval.path, beta).model_dump(),
        **training_data_summary(outputs).model_dump(),
        stage_seconds=stage_seconds(outputs),
        round_dir=str(round_dir.directory),
        policy=outputs.policy.path,
        reference=outputs.scored.reference.path,
        sampler=outputs.scored.sampler.path,
    )
    success_rate_plot(outputs.eval.path, beta, round_dir.success_rates_png)
    loss_plot(outputs.train_log.path, round_dir.loss_png)
    weights_plot(outputs.weights.path, outputs.prompt_stats.path, outputs.eval.path, round_dir.weights_png)
    write_text_atomic(summary.model_dump_json(indent=2), round_dir.summary_json)
    return summary


@stage("summarize-round")
def summarize_task(config: RoundConfig, outputs: RoundOutputs, round_dir: RoundDirectory) -> RoundSummary:
    return summarize_round(config, outputs, round_dir)
