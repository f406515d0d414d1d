"""Round summary: config.json, summary.json and the before/after plot in the round directory."""

from __future__ import annotations

import json
from pathlib import Path

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.duck import connect, sql_text, view
from bolt_tasks.stages.evaluation import heldout_summary
from bolt_tasks.stages.round_plots import loss_plot, success_rate_plot
from bolt_tasks.core.storage import ModelRef, TableRef, write_text_atomic
from bolt_tasks.stages.weights import summarize_prompt_stats


def training_data_summary(outputs: dict[str, TableRef | ModelRef]) -> dict:
    """Sampling, scoring and weighting statistics of the round's training rollouts."""
    connection = connect()
    for name in ("rollouts", "rewards"):
        view(connection, name, outputs[name].path)
    summary = connection.sql(sql_text("rollout_stats")).to_arrow_table().to_pylist()[0]
    return summary | summarize_prompt_stats(outputs["prompt_stats"].path)


def summarize_round(
    config: RoundConfig, outputs: dict[str, TableRef | ModelRef], round_dir: str | Path
) -> dict:
    """Everything `bolt run` reports, from the round's tables; outputs maps stage -> output."""
    round_dir = Path(round_dir)
    summary = {"pipeline": config.pipeline, "round": config.round, "beta": config.weighting.beta}
    summary |= heldout_summary(outputs["eval"].path, config.weighting.beta)
    summary |= training_data_summary(outputs)
    summary["stage_seconds"] = {
        "prompts": outputs["prompts"].seconds,
        "bootstrap": outputs["reference"].seconds,
        "sampling": outputs["rollouts"].seconds,
        "scoring": outputs["rewards"].seconds,
        "weights": outputs["weights"].seconds,
        "training": outputs["policy"].seconds,
        "evaluation": round(
            outputs["reference_eval"].seconds + outputs["policy_eval"].seconds
            + outputs["policy_logprobs"].seconds + outputs["eval"].seconds, 3,
        ),
    }
    summary["round_dir"] = str(round_dir)
    summary["policy"] = outputs["policy"].path
    summary["reference"] = outputs["reference"].path
    summary["sampler"] = outputs["sampler"].path
    success_rate_plot(outputs["eval"].path, config.weighting.beta, round_dir / "success_rates.png")
    loss_plot(outputs["train_log"].path, round_dir / "loss.png")
    write_text_atomic(json.dumps(config.model_dump(mode="json"), indent=2), round_dir / "config.json")
    write_text_atomic(json.dumps(summary, indent=2), round_dir / "summary.json")
    return summary


@stage("summarize-round", sql_files=("eval_summary", "weights_summary", "rollout_stats", "target_macro"))
def summarize_task(config: RoundConfig, outputs: dict, round_dir: str) -> dict:
    return summarize_round(config, outputs, round_dir)
