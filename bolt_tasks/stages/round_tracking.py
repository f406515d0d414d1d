"""A round's MLflow run: every config value as a param, the summary as metrics, the loss curve
by step, the registry's tables and the plots as artifacts, rollouts and weights as dataset
inputs, and the policy as a version of the pipeline's registered model."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from bolt_tasks.core.caching import stage
from bolt_tasks.core.catalogue import RoundDirectory, RunsDirectory
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.results import RoundSummary
from bolt_tasks.core.tables import MLFLOW_TABLES, ROLLOUTS, WEIGHTS
from bolt_tasks.core.tracking import (
    experiment_id,
    failed_unless_finished,
    flatten,
    log_params_and_metrics,
    mlflow_client,
    numeric_metrics,
)


CONFIGURATION_IN_SUMMARY = ("beta", "round")


def log_round(
    config: RoundConfig, summary: RoundSummary, runs: RunsDirectory, flow_run_id: str | None = None,
    parent_run_id: str | None = None, previous_run_id: str | None = None,
) -> str:
    """Log a finished round as one MLflow run (a child of parent_run_id when given)."""
    import pyarrow.parquet as pq
    from mlflow.entities import Metric

    round_dir = RoundDirectory(Path(summary.round_dir))
    client = mlflow_client(runs)
    run = client.create_run(
        experiment_id(client, f"bolt-{config.pipeline}", runs),
        run_name=f"{config.pipeline}/round-{config.round}",
        tags={
            "bolt.pipeline": config.pipeline,
            "bolt.round": str(config.round),
            "bolt.sampler_model": summary.sampler,
            "bolt.reference_model": summary.reference,
            "bolt.previous_round_run_id": previous_run_id or "",
            "bolt.round_dir": summary.round_dir,
            "prefect.flow_run_id": flow_run_id or "",
        } | ({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}),
    )
    run_id = run.info.run_id
    with failed_unless_finished(client, run_id):
        now = int(time.time() * 1000)
        # The configuration is in the params; the round is each metric's step, so a refresh's
        # rounds line up with its parent run's metrics by round.
        figures = {k: v for k, v in flatten("", summary.model_dump(mode="json")).items()
                   if k not in CONFIGURATION_IN_SUMMARY}
        metrics = numeric_metrics(figures, now, config.round)
        for row in pq.read_table(round_dir.table("train_log")).to_pylist():
            metrics += [
                Metric(f"train.{name}", float(row[name]), now, int(row["step"]))
                for name in ("loss", "grad_norm", "learning_rate")
            ]
        log_params_and_metrics(client, run_id, config.model_dump(mode="json"), metrics)
        for spec in MLFLOW_TABLES:
            client.log_artifact(run_id, round_dir.table(spec.name), "tables")
        for path in (round_dir.config_json, round_dir.summary_json, round_dir.success_rates_png,
                     round_dir.loss_png):
            client.log_artifact(run_id, str(path))
        client.log_artifacts(run_id, summary.policy, "policy")
        _log_datasets(client, run_id, round_dir)
        _register_policy(client, run_id, f"bolt-{config.pipeline}")
    client.set_terminated(run_id)
    return run_id


def _log_datasets(client, run_id: str, round_dir: RoundDirectory) -> None:
    """The round's rollouts and weights as MLflow dataset inputs (lineage: data -> run)."""
    import mlflow.data
    import pyarrow.parquet as pq
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for spec in (ROLLOUTS, WEIGHTS):
        path = round_dir.table(spec.name)
        with warnings.catch_warnings():
            # MLflow's hints about integer columns and how it read the path as a source are
            # for model signatures, not for a logged table; they would fill every run's log.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                pq.read_table(path).to_pandas(), source=path,
                name=f"{round_dir.directory.parent.name}/{round_dir.directory.name}/{spec.name}",
            )
        inputs.append(DatasetInput(dataset._to_mlflow_entity(),
                                   [InputTag("mlflow.data.context", "training")]))
    client.log_inputs(run_id, datasets=inputs)


def _register_policy(client, run_id: str, model_name: str) -> None:
    """Each round's policy becomes a version of the pipeline's registered model; the alias
    `newest` follows the latest round."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException:  # already registered by an earlier round
        pass
    version = client.create_model_version(model_name, f"runs:/{run_id}/policy", run_id=run_id)
    client.set_registered_model_alias(model_name, "newest", version.version)


@stage("log-to-mlflow", ignore_inputs=("parent_run_id",))
def log_round_task(
    config: RoundConfig, summary: RoundSummary, runs: RunsDirectory, tracking_uri: str,
    parent_run_id: str | None = None, previous_run_id: str | None = None,
) -> str:
    """`tracking_uri` (the resolved store) is an input so a new store gets its own run. The
    parent run is not: a round logged under an earlier invocation's parent stays logged."""
    from prefect.runtime import flow_run

    return log_round(config, summary, runs, flow_run.id, parent_run_id, previous_run_id)
