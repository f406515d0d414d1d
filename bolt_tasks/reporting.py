"""Publishing an analysis: tables, PNGs and a markdown report in a folder, the same as Prefect
artifacts (visible in the Prefect UI) and as one MLflow run."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from bolt_tasks.tables import write_table_atomic, write_text_atomic
from bolt_tasks.tracking import experiment_id, flatten, mlflow_client


def markdown_table(table: pa.Table, digits: int = 3) -> str:
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.column_names) + " |",
             "| " + " | ".join("---" for _ in table.column_names) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in table.to_pylist()]
    return "\n".join(lines)


def publish(
    name: str, out_dir: str | Path, runs_dir: str | Path, tables: dict[str, pa.Table],
    plots: list[Path], report: str, params: dict, experiment: str = "bolt-experiments",
) -> str:
    """Write tables (Parquet) and report.md to out_dir, make Prefect artifacts when inside a
    Prefect run, log one MLflow run; returns its id."""
    from mlflow.entities import Metric, Param

    out_dir = Path(out_dir)
    for table_name, table in tables.items():
        write_table_atomic(table, out_dir / f"{table_name}.parquet")
    write_text_atomic(report, out_dir / "report.md")
    _prefect_artifacts(name, tables, report)

    client = mlflow_client(runs_dir)
    run = client.create_run(
        experiment_id(client, experiment, runs_dir), run_name=name,
        tags={"bolt.analysis": name, "bolt.output_dir": str(out_dir.resolve())},
    )
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in flatten("", params).items()])
    now = int(time.time() * 1000)
    metrics = []
    for table_name, table in tables.items():
        for step, row in enumerate(table.to_pylist()):
            metrics += [Metric(f"{table_name}.{k}", float(v), now, step) for k, v in row.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for first in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[first : first + 1000])
    for path in [*(out_dir / f"{t}.parquet" for t in tables), out_dir / "report.md", *plots]:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id


def _prefect_artifacts(name: str, tables: dict[str, pa.Table], report: str) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import get_run_context
    from prefect.exceptions import MissingContextError

    try:
        get_run_context()
    except MissingContextError:
        return
    key = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    create_markdown_artifact(report, key=f"{key}-report", description=f"{name} report")
    for table_name, table in tables.items():
        if table.num_rows > 500:  # per-prompt tables stay Parquet files: the API refuses MBs
            continue
        table_key = "".join(c if c.isalnum() else "-" for c in f"{key}-{table_name}".lower())
        create_table_artifact(table.to_pylist(), key=table_key, description=f"{name}: {table_name}")
