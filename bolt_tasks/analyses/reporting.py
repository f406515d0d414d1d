"""Publishing an analysis: tables, PNGs and a markdown report in a folder, the same as Prefect
artifacts (visible in the Prefect UI) and as one MLflow run."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.storage import write_table_atomic, write_text_atomic
from bolt_tasks.core.tracking import (
    experiment_id,
    failed_unless_finished,
    log_params_and_metrics,
    mlflow_client,
    numeric_metrics,
)


def markdown_table(table: pa.Table, digits: int = 3) -> str:
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.column_names) + " |",
             "| " + " | ".join("---" for _ in table.column_names) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in table.to_pylist()]
    return "\n".join(lines)


def publish(
    name: str, out_dir: str | Path, runs: RunsDirectory, tables: dict[str, pa.Table],
    plots: list[Path], report: str, params: dict, experiment: str = "bolt-experiments",
) -> str:
    """Write tables (Parquet) and report.md to out_dir, make Prefect artifacts when inside a
    Prefect run, log one MLflow run; returns its id."""
    out_dir = Path(out_dir)
    for table_name, table in tables.items():
        write_table_atomic(table, out_dir / f"{table_name}.parquet")
    write_text_atomic(report, out_dir / "report.md")
    _prefect_artifacts(name, tables, report)

    client = mlflow_client(runs)
    run = client.create_run(
        experiment_id(client, experiment, runs), run_name=name,
        tags={"bolt.analysis": name, "bolt.output_dir": str(out_dir)},
    )
    run_id = run.info.run_id
    with failed_unless_finished(client, run_id):
        now = int(time.time() * 1000)
        metrics = [metric for table_name, table in tables.items()
                   for step, row in enumerate(table.to_pylist())
                   for metric in numeric_metrics(row, now, step, f"{table_name}.")]
        log_params_and_metrics(client, run_id, params, metrics)
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
    key = _artifact_key(name)
    create_markdown_artifact(report, key=f"{key}-report", description=f"{name} report")
    for table_name, table in tables.items():
        if table.num_rows > 500:  # per-prompt tables stay Parquet files: the API refuses MBs
            continue
        create_table_artifact(table.to_pylist(), key=_artifact_key(f"{key}-{table_name}"),
                              description=f"{name}: {table_name}")


def _artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
