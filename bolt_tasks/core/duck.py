"""DuckDB plumbing: connections, the SQL files of sql/ (package bolt_sql), Parquet views."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa


def connect() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    return connection


def sql_file(name: str):
    """sql/<name>.sql (installed as the package bolt_sql)."""
    return resources.files("bolt_sql").joinpath(f"{name}.sql")


def sql_text(name: str) -> str:
    """The statement in sql/<name>.sql, without its closing semicolon so it can be embedded.
    Call it with a literal name: stages' cache keys find the SQL they run that way."""
    return sql_file(name).read_text().strip().rstrip(";")


def view(connection, name: str, source: pa.Table | str | Path) -> None:
    """Expose an Arrow table or a Parquet file as view `name`, with a 0-based file_row_number."""
    if isinstance(source, pa.Table):
        rows = pa.array(range(source.num_rows), pa.int64())
        connection.register(name, source.append_column("file_row_number", rows))
    else:
        # can_have_nan: without it DuckDB trusts Parquet min/max statistics, which leave NaN
        # out, and skips row groups when filtering for NaN (duckdb/duckdb#25521).
        literal = str(source).replace("'", "''")
        connection.execute(
            f"CREATE VIEW {name} AS SELECT * FROM "
            f"read_parquet('{literal}', file_row_number = true, can_have_nan = true)"
        )
