"""MLflow tracking: one run per round with every config value, metrics, tables and plots.

Default store: SQLite at runs/mlflow.db with artifacts in runs/mlartifacts (no server);
MLFLOW_TRACKING_URI points it elsewhere. MlflowClient is used instead of the fluent API so
nothing depends on a thread-local active run.
"""

from __future__ import annotations

import fcntl
import os
import time
import warnings
from pathlib import Path

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import RoundConfig

ROUND_TABLES = ("prompts", "rollouts", "rewards", "weights", "prompt_stats", "eval", "train_log")
ROUND_FILES = ("config.json", "summary.json", "success_rates.png", "loss.png")


def tracking_uri(runs_dir: str | Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(runs_dir).resolve()}/mlflow.db"


def mlflow_client(runs_dir: str | Path):
    """An MlflowClient whose store exists. Creating a SQLite store is not safe from two
    processes at once (both run the schema migration: 'table ... already exists'), and served
    flow runs start together, so the first touch happens under a file lock."""
    import mlflow

    uri = tracking_uri(runs_dir)
    if not uri.startswith("sqlite:"):
        return mlflow.MlflowClient(uri)
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(runs_dir) / ".mlflow-store.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # The constructor already opens the store, and with it runs the migration.
            return mlflow.MlflowClient(uri)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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


def experiment_id(client, name: str, runs_dir: str | Path) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        artifacts = (Path(runs_dir).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


def log_round(
    config: RoundConfig, summary: dict, round_dir: str | Path, runs_dir: str | Path,
    flow_run_id: str | None = None, parent_run_id: str | None = None,
    previous_run_id: str | None = None,
) -> str:
    """Log a finished round as one MLflow run (a child of parent_run_id when given), with its
    rollouts and weights as dataset inputs and its policy as a registered model version."""
    import pyarrow.parquet as pq  # MLflow itself is imported lazily: it takes seconds
    from mlflow.entities import Metric

    round_dir = Path(round_dir)
    client = mlflow_client(runs_dir)
    run = client.create_run(
        experiment_id(client, f"bolt-{config.pipeline}", runs_dir),
        run_name=f"{config.pipeline}/round-{config.round}",
        tags={
            "bolt.pipeline": config.pipeline,
            "bolt.round": str(config.round),
            "bolt.sampler_model": summary["sampler"],
            "bolt.reference_model": summary["reference"],
            "bolt.previous_round_run_id": previous_run_id or "",
            "bolt.round_dir": str(round_dir.resolve()),
            "prefect.flow_run_id": flow_run_id or "",
        } | ({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}),
    )
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics = numeric_metrics(flatten("", summary), now, 0)
    train_log = pq.read_table(round_dir / "train_log.parquet").to_pylist()
    for row in train_log:
        metrics += [
            Metric(f"train.{name}", float(row[name]), now, int(row["step"]))
            for name in ("loss", "grad_norm", "learning_rate")
        ]
    log_params_and_metrics(client, run_id, config.model_dump(mode="json"), metrics)
    for name in ROUND_TABLES:
        client.log_artifact(run_id, str(round_dir / f"{name}.parquet"), "tables")
    for name in ROUND_FILES:
        client.log_artifact(run_id, str(round_dir / name))
    client.log_artifacts(run_id, summary["policy"], "policy")
    _log_datasets(client, run_id, round_dir)
    _register_policy(client, run_id, f"bolt-{config.pipeline}")
    client.set_terminated(run_id)
    return run_id


def _log_datasets(client, run_id: str, round_dir: Path) -> None:
    """The round's rollouts and weights as MLflow dataset inputs (lineage: data -> run)."""
    import mlflow.data
    import pyarrow.parquet as pq
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for name in ("rollouts", "weights"):
        path = round_dir / f"{name}.parquet"
        with warnings.catch_warnings():
            # MLflow's hints about integer columns and how it read the path as a source are
            # for model signatures, not for a logged table; they would fill every run's log.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                pq.read_table(path).to_pandas(), source=str(path.resolve()),
                name=f"{round_dir.parent.name}/{round_dir.name}/{name}",
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
    config: RoundConfig, summary: dict, round_dir: str, runs_dir: str, tracking: str,
    parent_run_id: str | None = None, previous_run_id: str | None = None,
) -> str:
    """`tracking` (the resolved tracking URI) is an input so a new store gets its own run. The
    parent run is not: a round logged under an earlier invocation's parent stays logged."""
    from prefect.runtime import flow_run

    return log_round(config, summary, round_dir, runs_dir, flow_run.id, parent_run_id, previous_run_id)
