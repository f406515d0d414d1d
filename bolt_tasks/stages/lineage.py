"""A refresh pipeline's lineage: which rounds to run, and its MLflow parent run."""

from __future__ import annotations

import json
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from bolt_tasks.core.catalogue import PipelineDirectory, RunsDirectory  # noqa: E402
from bolt_tasks.core.results import RoundSummary  # noqa: E402
from bolt_tasks.core.run_names import refresh_run_name  # noqa: E402
from bolt_tasks.core.storage import save_figure_atomic, write_text_atomic  # noqa: E402
from bolt_tasks.core.tracking import (  # noqa: E402
    experiment_id,
    log_params_and_metrics,
    mlflow_client,
)

BY_ROUND = ("policy_accuracy", "target_accuracy", "kl", "projection_gap", "target_error",
            "coverage", "mean_ess_fraction")


def rounds_to_run(completed: list[int], add_rounds: int, until_round: int | None) -> int:
    """The last round index this invocation must complete."""
    if until_round is not None:
        return until_round
    return (completed[-1] + 1 if completed else 0) + add_rounds - 1


@task(name="start-parent-run", cache_policy=NO_CACHE)
def start_parent_run_task(pipeline: str, runs: RunsDirectory, first_round: int, last_round: int,
                          params: dict | None = None) -> str:
    """The invocation's MLflow run, with its configuration (`params`: add_rounds, the rounds'
    eta and alpha, ...) as params."""
    from prefect.runtime import flow_run

    client = mlflow_client(runs)
    run = client.create_run(
        experiment_id(client, f"bolt-{pipeline}", runs),
        run_name=refresh_run_name(pipeline, first_round, last_round),
        tags={"bolt.pipeline": pipeline, "bolt.kind": "refresh",
              "prefect.flow_run_id": flow_run.id or ""},
    )
    log_params_and_metrics(client, run.info.run_id, params or {}, [])
    return run.info.run_id


def rounds_plot(summaries: list[RoundSummary], out_path) -> None:
    rounds = [s.round for s in summaries]
    figure, (accuracy, divergence) = plt.subplots(1, 2, figsize=(11, 5))
    accuracy.plot(rounds, [s.policy_accuracy for s in summaries], "o-", label="pi_(k+1) held-out accuracy")
    accuracy.plot(rounds, [s.target_accuracy for s in summaries], "k--", label="target p* accuracy")
    accuracy.axhline(summaries[0].ref_accuracy, color="grey", linestyle=":", label="pi_ref")
    accuracy.plot(rounds, [s.coverage for s in summaries], "s-", label="coverage of round-k samples")
    divergence.plot(rounds, [s.kl for s in summaries], "o-", label="KL(pi || pi_ref)")
    divergence.plot(rounds, [s.projection_gap for s in summaries], "^-", label="KL(pi* || pi)")
    divergence.plot(rounds, [s.target_error for s in summaries], "s-", label="mean |p - p*|")
    for axes in (accuracy, divergence):
        axes.set_xlabel("round k")
        axes.set_xticks(rounds)
        axes.grid(alpha=0.3)
        # below the axes: inside, the legend covered the pi_ref line
        axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    figure.suptitle(f"refreshed rounds of '{summaries[0].pipeline}'", fontsize=10)
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=110)
    plt.close(figure)


@task(name="finish-parent-run", cache_policy=NO_CACHE)
def finish_parent_run_task(
    parent_run_id: str, summaries: list[RoundSummary], pipeline: PipelineDirectory, runs: RunsDirectory
) -> str:
    """Metrics by round (step = round), rounds.json and a PNG of them on the parent run."""
    from mlflow.entities import Metric

    client = mlflow_client(runs)
    now = int(time.time() * 1000)
    client.log_batch(parent_run_id, metrics=[
        Metric(key, float(getattr(s, key)), now, s.round) for s in summaries for key in BY_ROUND])
    rounds_plot(summaries, pipeline.rounds_png)
    write_text_atomic(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2),
                      pipeline.rounds_json)
    client.log_artifact(parent_run_id, str(pipeline.rounds_png))
    client.log_artifact(parent_run_id, str(pipeline.rounds_json))
    client.set_terminated(parent_run_id)
    return str(pipeline.rounds_png)
