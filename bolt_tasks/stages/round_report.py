"""What a round achieved, where a Prefect user looks: a markdown artifact on the round's flow
run (and a table artifact by round on a refresh run), and one log line in the run's own log."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from bolt_tasks.core.progress import run_logger
from bolt_tasks.core.results import RoundSummary


def _figure(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def round_markdown(summary: RoundSummary) -> str:
    """The round's figures as markdown: accuracy before and after with its standard error, KL,
    the target, the training data's ESS/N and coverage, stage times, the MLflow run."""
    gain_se = _figure(summary.accuracy_gain_se and 100 * summary.accuracy_gain_se, 2)
    seconds = summary.stage_seconds.model_dump()
    lines = [
        f"# BOLT round {summary.round} of `{summary.pipeline}`",
        "",
        f"beta = {summary.beta:g}; held-out: {summary.heldout_prompts} prompts x "
        f"{summary.heldout_samples_per_prompt} samples; training: {summary.train_prompts} prompts, "
        f"{summary.rollouts} rollouts",
        "",
        "| metric | pi_ref | pi_BOLT |",
        "| --- | --- | --- |",
        f"| accuracy, temperature 1 | {_figure(summary.ref_accuracy)} | {_figure(summary.policy_accuracy)} |",
        f"| accuracy, greedy | {_figure(summary.ref_accuracy_greedy)} | {_figure(summary.policy_accuracy_greedy)} |",
        f"| KL(pi \\|\\| pi_ref) | 0 | {_figure(summary.kl, 4)} |",
        f"| J = reward - beta*KL | {_figure(summary.ref_objective_j, 4)} | {_figure(summary.objective_j, 4)} |",
        f"| target accuracy p* | | {_figure(summary.target_accuracy)} |",
        f"| mean abs(p_theta - p*) (noise floor) | | {_figure(summary.target_error, 4)} "
        f"({_figure(summary.target_error_noise_floor, 4)}) |",
        "",
        f"**Gain {100 * summary.accuracy_gain:+.1f} points (SE {gain_se})**; training prompts: mean "
        f"ESS/N {_figure(summary.mean_ess_fraction)}, coverage {_figure(summary.coverage)}, "
        f"informative {_figure(summary.informative_share)}",
        "",
        "Stage compute time: " + ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items()),
        "",
        f"Tables: `{summary.round_dir}`",
        "",
        f"MLflow run [{summary.mlflow_run_id}]({summary.mlflow_run_page}) in `{summary.tracking_uri}` "
        f"(the link opens it in `mlflow ui --backend-store-uri {summary.tracking_uri} --port 5000`)",
    ]
    return "\n".join(lines)


def round_line(summary: RoundSummary) -> str:
    return (f"round {summary.round} of {summary.pipeline}: held-out accuracy {summary.ref_accuracy:.3f} "
            f"-> {summary.policy_accuracy:.3f} ({100 * summary.accuracy_gain:+.1f} points), KL "
            f"{summary.kl:.4f}, target error {summary.target_error:.4f}; MLflow run {summary.mlflow_run_id}")


def report_round(summary: RoundSummary) -> None:
    """Every flow run that reaches the round, cached or not, shows its figures: a line in its log
    and a markdown artifact of the flow run itself (called from the flow, not from a task, whose
    artifacts the UI files under the task run)."""
    run_logger().info(round_line(summary))
    create_markdown_artifact(round_markdown(summary), key=f"bolt-{artifact_key(summary.pipeline)}-round-{summary.round}",
                             description=f"BOLT round {summary.round} of {summary.pipeline}")


def artifact_key(pipeline: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in pipeline.lower())


@task(name="report-rounds", cache_policy=NO_CACHE)
def report_rounds_task(summaries: list[RoundSummary]) -> None:
    """A refresh run's rounds as a table artifact, one row per round."""
    if not summaries:
        return
    rows = [{"round": s.round, "pi_ref accuracy": round(s.ref_accuracy, 4),
             "policy accuracy": round(s.policy_accuracy, 4), "gain (points)": round(100 * s.accuracy_gain, 2),
             "KL": round(s.kl, 4), "target error": round(s.target_error, 4),
             "ESS/N": round(s.mean_ess_fraction, 3), "coverage": round(s.coverage, 3),
             "MLflow run": s.mlflow_run_id} for s in summaries]
    create_table_artifact(rows, key=f"bolt-{artifact_key(summaries[0].pipeline)}-rounds",
                          description=f"Refreshed rounds of {summaries[0].pipeline}")
