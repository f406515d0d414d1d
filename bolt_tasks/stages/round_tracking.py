"""A round's MLflow run, open while the round runs: every config value as a param from the start,
the loss curve by step when training ends, then the summary as metrics, the registry's tables
and the plots as artifacts, rollouts and weights as dataset inputs, and the policy as an MLflow
model (transformers flavor) registered as a version of the pipeline's model."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from bolt_tasks.core.caching import stage
from bolt_tasks.core.catalogue import RoundDirectory, RunsDirectory
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.results import RoundSummary
from bolt_tasks.core.run_names import round_run_name
from bolt_tasks.core.storage import TableRef
from bolt_tasks.core.tables import MLFLOW_TABLES, ROLLOUTS, WEIGHTS
from bolt_tasks.core.tracking import (
    experiment_id,
    failed_unless_finished,
    flatten,
    log_params_and_metrics,
    mlflow_client,
    numeric_metrics,
    run_page,
)
from bolt_tasks.stages.mlflow_model import log_policy_model

CONFIGURATION_IN_SUMMARY = ("beta", "round")
UI_TABLE_ROWS = 500
# Tables a reader opens in the UI whatever their size (a JSON table of 512 held-out prompts is
# still small); the others only when they are small, and always as Parquet.
VIEWED_TABLES = ("eval",)


def _existing_run(client, experiment: str, config: RoundConfig, round_dir: str):
    """The newest run opened for this round directory (pipeline names cannot hold quotes;
    directories can, so they are compared here rather than in the filter)."""
    found = client.search_runs(
        [experiment], order_by=["attributes.start_time DESC"],
        filter_string=f"tags.`bolt.pipeline` = '{config.pipeline}' and tags.`bolt.round` = '{config.round}'")
    return next((run for run in found if run.data.tags.get("bolt.round_dir") == round_dir), None)


def open_round_run(
    config: RoundConfig, runs: RunsDirectory, round_dir: RoundDirectory, flow_run_id: str | None = None,
    parent_run_id: str | None = None, previous_run_id: str | None = None,
) -> str:
    """The round's MLflow run, opened when the round starts: RUNNING, its configuration as params
    (a child of parent_run_id when given). A round that an earlier invocation began (stopped,
    crashed, failed) continues the run that invocation opened, back to RUNNING; a round that
    already finished keeps its FINISHED run untouched."""
    client = mlflow_client(runs)
    experiment = experiment_id(client, f"bolt-{config.pipeline}", runs)
    earlier = _existing_run(client, experiment, config, str(round_dir.directory))
    if earlier is not None:
        if earlier.info.status != "FINISHED":
            client.update_run(earlier.info.run_id, status="RUNNING")
        return earlier.info.run_id
    run = client.create_run(
        experiment,
        run_name=round_run_name(config.pipeline, config.round),
        tags={
            "bolt.pipeline": config.pipeline,
            "bolt.round": str(config.round),
            "bolt.previous_round_run_id": previous_run_id or "",
            "bolt.round_dir": str(round_dir.directory),
            "prefect.flow_run_id": flow_run_id or "",
        } | ({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}),
    )
    with failed_unless_finished(client, run.info.run_id):
        log_params_and_metrics(client, run.info.run_id, config.model_dump(mode="json"), [])
    return run.info.run_id


def log_training_curve(runs: RunsDirectory, run_id: str, train_log: str) -> None:
    """Loss, gradient norm and learning rate by optimizer step, as soon as training ends."""
    import pyarrow.parquet as pq
    from mlflow.entities import Metric

    client = mlflow_client(runs)
    now = int(time.time() * 1000)
    metrics = [Metric(f"train.{name}", float(row[name]), now, int(row["step"]))
               for row in pq.read_table(train_log).to_pylist()
               for name in ("loss", "grad_norm", "learning_rate")]
    log_params_and_metrics(client, run_id, {}, metrics)


def log_round(config: RoundConfig, summary: RoundSummary, runs: RunsDirectory, run_id: str) -> None:
    """A finished round's figures, tables, plots, datasets and policy into its open run."""
    round_dir = RoundDirectory(Path(summary.round_dir))
    client = mlflow_client(runs)
    client.set_tag(run_id, "bolt.sampler_model", summary.sampler)
    client.set_tag(run_id, "bolt.reference_model", summary.reference)
    now = int(time.time() * 1000)
    # The configuration is in the params; the round is each metric's step, so a refresh's
    # rounds line up with its parent run's metrics by round. Counts are params and stage times
    # tags: neither is a measurement to chart.
    figures = {k: v for k, v in flatten("", summary.model_dump(mode="json")).items()
               if k not in CONFIGURATION_IN_SUMMARY}
    counts = {f"count.{k}": v for k, v in figures.items() if isinstance(v, int) and not isinstance(v, bool)}
    seconds = {k: v for k, v in figures.items() if k.startswith("stage_seconds.")}
    measures = {k: v for k, v in figures.items() if f"count.{k}" not in counts and k not in seconds}
    log_params_and_metrics(client, run_id, counts, numeric_metrics(measures, now, config.round))
    for name, value in seconds.items():
        client.set_tag(run_id, f"bolt.{name}", f"{value:.1f} s")
    _log_tables(client, run_id, round_dir)
    client.log_table(run_id, _summary_table(figures), "tables/summary.json")
    for path in (round_dir.config_json, round_dir.summary_json, *round_dir.plots):
        client.log_artifact(run_id, str(path))
    model_uri = log_policy_model(client, runs.tracking_uri(), run_id, summary.policy, config.evaluation.max_new_tokens)
    _log_datasets(client, run_id, round_dir)
    _register_policy(client, runs.tracking_uri(), run_id, model_uri, f"bolt-{config.pipeline}",
                     {"bolt.pipeline": config.pipeline, "bolt.round": str(config.round)})


def _log_tables(client, run_id: str, round_dir: RoundDirectory) -> None:
    """The registry's MLflow tables as Parquet (the source of truth), and those small enough to
    read in the UI also as MLflow JSON tables, which its artifact view shows as a grid."""
    import pyarrow.parquet as pq

    for spec in MLFLOW_TABLES:
        path = round_dir.table(spec.name)
        client.log_artifact(run_id, path, "tables")
        table = pq.read_table(path)
        if table.num_rows <= UI_TABLE_ROWS or spec.name in VIEWED_TABLES:
            client.log_table(run_id, table.to_pandas(), f"tables/{spec.name}.json")


def _summary_table(figures: dict):
    """The round's summary as a two-column table (figure, value), for the UI's table view."""
    import pandas as pd

    return pd.DataFrame({"figure": list(figures), "value": [str(value) for value in figures.values()]})


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
            # The schema is inferred when the entity is made, so that is inside too.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                pq.read_table(path).to_pandas(), source=path,
                name=f"{round_dir.directory.parent.name}/{round_dir.directory.name}/{spec.name}",
            )
            entity = dataset._to_mlflow_entity()
        inputs.append(DatasetInput(entity, [InputTag("mlflow.data.context", "training")]))
    client.log_inputs(run_id, datasets=inputs)


def _register_policy(client, tracking_uri: str, run_id: str, model_uri: str, model_name: str,
                     tags: dict[str, str]) -> None:
    """Each round's policy becomes a version of the pipeline's registered model, tagged with its
    pipeline and round; the alias `newest` follows the latest round."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException:  # already registered by an earlier round
        pass
    import json

    from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    model_id = model_uri.removeprefix("models:/")
    # The registry resolves a models:/ source through the fluent API's store.
    with _use_tracking_uri(tracking_uri):
        version = client.create_model_version(model_name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    # The logged model's page lists its versions from this tag (as mlflow.register_model sets it).
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(
        [{"name": version.name, "version": version.version}])})
    client.set_registered_model_alias(model_name, "newest", version.version)


@task(name="open-mlflow-run", cache_policy=NO_CACHE)
def open_round_run_task(
    config: RoundConfig, runs: RunsDirectory, round_dir: RoundDirectory,
    parent_run_id: str | None = None, previous_run_id: str | None = None,
) -> str:
    from prefect.runtime import flow_run

    return open_round_run(config, runs, round_dir, flow_run.id, parent_run_id, previous_run_id)


@stage("log-training-curve")
def log_training_curve_task(runs: RunsDirectory, run_id: str, train_log: TableRef) -> None:
    """Cached on the run and the curve: a resumed round logs a curve once."""
    log_training_curve(runs, run_id, train_log.path)


@stage("log-to-mlflow")
def log_round_task(config: RoundConfig, summary: RoundSummary, runs: RunsDirectory, run_id: str) -> str:
    """Cached on the run it logs into: a round logged once is not logged again, and a new
    store (another run id) gets everything."""
    log_round(config, summary, runs, run_id)
    return run_id


@task(name="mlflow-run-page", cache_policy=NO_CACHE)
def run_page_task(runs: RunsDirectory, run_id: str) -> str:
    return run_page(mlflow_client(runs), run_id, runs.tracking_uri())


@task(name="close-mlflow-run", cache_policy=NO_CACHE)
def close_round_run_task(runs: RunsDirectory, run_id: str) -> None:
    client = mlflow_client(runs)
    if client.get_run(run_id).info.status != "FINISHED":
        client.set_terminated(run_id, "FINISHED")
