"""MLflow plumbing: a client for the runs directory's store, experiments, params and metrics.

Default store: SQLite at runs/mlflow.db with artifacts in runs/mlartifacts (no server), moved
with the runs directory (core/tracking_relocation.py); MLFLOW_TRACKING_URI points it elsewhere.
MlflowClient is used instead of the fluent API so nothing depends on a thread-local active run.
MLflow itself is imported lazily: it takes seconds.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.tracking_relocation import relocate_store


def mlflow_client(runs: RunsDirectory):
    """An MlflowClient whose store exists. Creating a SQLite store is not safe from two
    processes at once (both run the schema migration: 'table ... already exists'), and served
    flow runs start together, so the first touch happens under a file lock."""
    import mlflow

    uri = runs.tracking_uri()
    if not uri.startswith("sqlite:"):
        return mlflow.MlflowClient(uri)
    runs.root.mkdir(parents=True, exist_ok=True)
    with open(runs.mlflow_store_lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if uri == f"sqlite:///{runs.mlflow_store}":
                if not runs.mlflow_store.exists():
                    _create_store(uri, runs)
                else:
                    relocate_store(runs.mlflow_store, runs.root)
            # The constructor already opens the store, and with it runs the migration.
            return mlflow.MlflowClient(uri)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _create_store(uri: str, runs: RunsDirectory) -> None:
    """A new store whose every artifact lives under runs/mlartifacts. MLflow creates a "Default"
    experiment in every store, with artifacts under ./mlruns of whatever directory the first
    command ran in; BOLT never logs there, so it is created with BOLT's artifact root and
    deleted (the UI hides it; `mlflow experiments restore --experiment-id 0` brings it back)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, runs.mlflow_artifacts.as_uri())
    store.delete_experiment(store.DEFAULT_EXPERIMENT_ID)
    store.engine.dispose()


def flatten(prefix: str, value) -> dict[str, object]:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat |= flatten(f"{prefix}.{key}" if prefix else key, item)
        return flat
    return {prefix: value}


def numeric_metrics(values: dict, timestamp: int, step: int, prefix: str = "") -> list:
    """The numbers among `values` as MLflow metrics (booleans and text are not metrics)."""
    from mlflow.entities import Metric

    return [Metric(f"{prefix}{k}", float(v), timestamp, step) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]


def log_params_and_metrics(client, run_id: str, params: dict, metrics: list) -> None:
    """`params` flattened to dotted names (values cut to MLflow's 6000 characters) and
    `metrics`, in batches within MLflow's limits of 100 params and 1000 metrics per call."""
    from mlflow.entities import Param

    flat = [Param(k, str(v)[:6000]) for k, v in flatten("", params).items()]
    for first in range(0, len(flat), 100):
        client.log_batch(run_id, params=flat[first : first + 100])
    for first in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[first : first + 1000])


@contextmanager
def failed_unless_finished(client, run_id: str):
    """Mark the run FAILED if the block raises (a full disk, an interrupt): no run is left
    RUNNING forever by a logging step that did not finish."""
    try:
        yield
    except BaseException:
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:  # the store itself may be what failed; the original error matters
            pass
        raise


@contextmanager
def run_failed_on_error(runs: RunsDirectory, run_id: str):
    """The run (a round's, or a refresh invocation's parent) ends FAILED if the block raises or
    is interrupted."""
    with failed_unless_finished(mlflow_client(runs), run_id):
        yield


# MLflow 3's UI opens an experiment as a GenAI one unless it is told otherwise; this tag is what
# its own "Model training" experiments carry.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Where `mlflow ui` serves by default; the link's parameter opens the UI in its model-training
# mode (the experiment's runs table) even in a browser that never chose a mode.
MLFLOW_UI = "http://127.0.0.1:5000"


def is_tracking_server(tracking_uri: str | None) -> bool:
    """Whether MLflow logs to a tracking server (which serves its own UI) rather than a store
    in a file or database that `bolt ui` serves."""
    return (tracking_uri or "").startswith(("http://", "https://"))


def experiment_id(client, name: str, runs: RunsDirectory) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get("mlflow.experimentKind") is None:  # made by an older BOLT
            client.set_experiment_tag(experiment.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return experiment.experiment_id
    artifacts = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        artifacts = runs.mlflow_artifacts.as_uri()
    return client.create_experiment(name, artifact_location=artifacts, tags=EXPERIMENT_KIND)


def run_page(client, run_id: str, tracking_uri: str) -> str:
    """The run's page, in the model-training mode: on the tracking server when MLflow logs to
    one, else in `mlflow ui` on its default host and port."""
    experiment = client.get_run(run_id).info.experiment_id
    ui = tracking_uri.rstrip("/") if is_tracking_server(tracking_uri) else MLFLOW_UI
    return f"{ui}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"
