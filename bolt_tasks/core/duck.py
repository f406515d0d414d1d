"""DuckDB plumbing: connections, the SQL files of sql/ (package bolt_sql), Parquet views."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from bolt_tasks.core.errors import BoltInputError


MEMORY_LIMIT_VARIABLE = "BOLT_DUCKDB_MEMORY_LIMIT"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB. BOLT_DUCKDB_MEMORY_LIMIT (e.g. 1.5GB; DuckDB's default is 80% of
    RAM) bounds its memory; beyond it DuckDB spills to its temp_directory (.tmp in the working
    directory). A setting, not a config field: it changes no number, so no cache key."""
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    limit = os.environ.get(MEMORY_LIMIT_VARIABLE)
    if limit:
        try:
            connection.execute("SET memory_limit = ?", [limit])
        except duckdb.Error as error:
            raise BoltInputError(f"{MEMORY_LIMIT_VARIABLE}={limit!r}: {error}") from None
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
