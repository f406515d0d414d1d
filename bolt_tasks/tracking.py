"""MLflow tracking: one run per round with every config value, metrics, tables and plots.

Default store: SQLite at runs/mlflow.db with artifacts in runs/mlartifacts (no server);
MLFLOW_TRACKING_URI points it elsewhere. MlflowClient is used instead of the fluent API so
nothing depends on a thread-local active run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bolt_tasks.caching import stage
from bolt_tasks.config import RoundConfig

ROUND_TABLES = ("prompts", "rollouts", "rewards", "weights", "prompt_stats", "eval", "train_log")
ROUND_FILES = ("config.json", "summary.json", "success_rates.png", "loss.png")


def tracking_uri(runs_dir: str | Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(runs_dir).resolve()}/mlflow.db"


def flatten(prefix: str, value) -> dict[str, object]:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat |= flatten(f"{prefix}.{key}" if prefix else key, item)
        return flat
    return {prefix: value}


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
    flow_run_id: str | None = None,
) -> str:
    """Log a finished round as one MLflow run; returns its run id."""
    import mlflow  # imported here: it takes seconds, and only this stage needs it
    import pyarrow.parquet as pq
    from mlflow.entities import Metric, Param

    round_dir = Path(round_dir)
    client = mlflow.MlflowClient(tracking_uri(runs_dir))
    run = client.create_run(
        experiment_id(client, f"bolt-{config.pipeline}", runs_dir),
        run_name=f"{config.pipeline}/round-{config.round}",
        tags={
            "bolt.pipeline": config.pipeline,
            "bolt.round": str(config.round),
            # bolt-round samples from pi_ref itself; refreshed rounds will sample from pi_k.
            "bolt.sampler_model": summary["reference"],
            "bolt.round_dir": str(round_dir.resolve()),
            "prefect.flow_run_id": flow_run_id or "",
        },
    )
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)) for k, v in flatten("", config.model_dump(mode="json")).items()]
    metrics = [
        Metric(k, float(v), now, 0)
        for k, v in flatten("", summary).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    train_log = pq.read_table(round_dir / "train_log.parquet").to_pylist()
    for row in train_log:
        metrics += [
            Metric(f"train.{name}", float(row[name]), now, int(row["step"]))
            for name in ("loss", "grad_norm", "learning_rate")
        ]
    for first in range(0, len(params), 100):
        client.log_batch(run_id, params=params[first : first + 100])
    for first in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[first : first + 1000])
    for name in ROUND_TABLES:
        client.log_artifact(run_id, str(round_dir / f"{name}.parquet"), "tables")
    for name in ROUND_FILES:
        client.log_artifact(run_id, str(round_dir / name))
    client.log_artifacts(run_id, summary["policy"], "policy")
    client.set_terminated(run_id)
    return run_id


@stage("log-to-mlflow")
def log_round_task(
    config: RoundConfig, summary: dict, round_dir: str, runs_dir: str, tracking: str
) -> str:
    """`tracking` (the resolved tracking URI) is an input so a new store gets its own run."""
    from prefect.runtime import flow_run

    return log_round(config, summary, round_dir, runs_dir, flow_run.id)
