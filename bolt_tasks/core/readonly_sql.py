"""`bolt sql`'s connection: read-only SQL over every table of a runs directory, one view per
registered table (core/tables.py; sql/views.sql is the same views for the duckdb CLI).

Two guards keep it read-only:
  1. run_query parses the text (connection.extract_statements) and runs nothing unless every
     statement is a read: a SELECT (DESCRIBE, SHOW, SUMMARIZE, VALUES, FROM-first and
     PIVOT ... IN (...) parse as SELECT) whose query tree (json_serialize_sql) holds no
     INSERT/UPDATE/DELETE, which DuckDB accepts inside a WITH, or an EXPLAIN of such a SELECT
     (EXPLAIN ANALYZE runs what it explains). Everything else (INSERT, UPDATE, DELETE, CREATE,
     DROP, ALTER, COPY, ATTACH, INSTALL/LOAD, SET/RESET/USE, PRAGMA, IMPORT/EXPORT, CALL,
     CHECKPOINT, transactions, PIVOT without IN, ...) is refused with a BoltInputError before any
     statement of the text runs.
  2. The connection: once the views exist, DuckDB may touch no file outside the runs directory
     (allowed_directories + enable_external_access = false; the views still read lazily),
     extensions are not installed on demand, and the configuration is locked, so no query can
     lift those limits. Inside the runs directory DuckDB's sandbox would still allow a write,
     which is why guard 1 refuses every statement that could write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.duck import connect
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.tables import VIEWS, view_statement

_GLOB_CHARACTERS = set("*?[]{}")
# Query-tree nodes of a plain read (json_serialize_sql); e.g. DELETE_QUERY_NODE is not one.
_READ_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
_EXPLAIN = re.compile(r"EXPLAIN\s+(?:ANALY[SZ]E\s+|\([^)]*\)\s*)?(?P<inner>.*)", re.IGNORECASE | re.DOTALL)
_LEADING_COMMENTS = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)

ALLOWED = "only SELECT, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN of a SELECT are allowed"


def open_runs(runs_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the registry's views over runs_dir.

    A view is created only when its table exists for at least one pipeline and round (DuckDB
    rejects a glob that matches no file); `SHOW TABLES` lists those created. Raises
    BoltInputError when runs_dir holds no table at all, or a table's files cannot be read.
    """
    root = RunsDirectory.at(runs_dir).root
    if not root.is_dir():
        raise BoltInputError(f"{runs_dir}: no such runs directory "
                             f"(expected <runs>/<pipeline>/round-<k>/*.parquet)")
    prefix = root.as_posix()
    if _GLOB_CHARACTERS & set(prefix):
        raise BoltInputError(f"{runs_dir}: bolt sql cannot read a runs directory whose path contains "
                             f"any of {''.join(sorted(_GLOB_CHARACTERS))}")
    connection = connect()
    created = 0
    for spec in VIEWS:
        if not any(root.glob(f"*/round-*/{spec.file_name}")):
            continue  # never written yet: no view rather than a view that fails
        try:
            connection.execute(view_statement(spec, prefix.rstrip("/") + "/"))
        except duckdb.Error as error:
            raise BoltInputError(f"{runs_dir}: cannot read the {spec.file_name} files ({error})") from None
        created += 1
    if not created:
        raise BoltInputError(f"{runs_dir}: no tables found (expected <runs>/<pipeline>/round-<k>/*.parquet; "
                             f"run `bolt run --runs-dir {runs_dir}` first)")
    directory = (prefix.rstrip("/") + "/").replace("'", "''")
    connection.execute(f"SET allowed_directories = ['{directory}']")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET autoinstall_known_extensions = false")
    connection.execute("SET lock_configuration = true")
    return connection


def _refuse(what: str) -> BoltInputError:
    return BoltInputError(f"bolt sql is read-only: refused {what} ({ALLOWED})")


def _strip_comments(text: str) -> str:
    return text[_LEADING_COMMENTS.match(text).end():]


def _describe(statement, type_name: str) -> str:
    """'DELETE'; 'INSTALL (DuckDB statement type LOAD)' when the first keyword is not the type."""
    words = _strip_comments(statement.query).split(None, 1)
    keyword = words[0].upper().rstrip(";") if words else ""
    if keyword and keyword.isalpha() and keyword != type_name.split()[0]:
        return f"{keyword} (DuckDB statement type {type_name})"
    return type_name


def _check_select(connection, text: str) -> None:
    """Refuse a SELECT whose query tree holds anything but reads (e.g. WITH d AS (DELETE ...))."""
    serialized = json.loads(connection.execute("SELECT json_serialize_sql(?)", [text]).fetchall()[0][0])
    if serialized.get("error"):
        raise _refuse(f"a statement it cannot verify as a read: {serialized.get('error_message', '')}")
    nodes: set[str] = set()
    pending = [serialized["statements"]]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if isinstance(kind, str) and kind.endswith("_NODE"):
                nodes.add(kind)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    writes = sorted(nodes - _READ_NODES)
    if writes:
        names = ", ".join(node.removesuffix("_NODE").removesuffix("_QUERY") for node in writes)
        raise _refuse(f"{names} inside a SELECT (a data-modifying WITH)")


def _check(connection, statement, explained: bool = False) -> None:
    try:
        kind = statement.type
    except ValueError:  # a statement type this duckdb's Python API has no name for
        raise _refuse(_describe(statement, "unknown to this duckdb client")) from None
    if kind == duckdb.StatementType.SELECT:
        _check_select(connection, statement.query)
    elif kind == duckdb.StatementType.EXPLAIN and not explained:
        # EXPLAIN ANALYZE runs the statement it explains: that must be a read too.
        match = _EXPLAIN.fullmatch(_strip_comments(statement.query))
        inner = _parse(connection, match["inner"]) if match else []
        if len(inner) != 1:
            raise _refuse("EXPLAIN of something other than one SELECT")
        _check(connection, inner[0], explained=True)
    elif kind == duckdb.StatementType.MULTI:
        raise _refuse("MULTI, a statement DuckDB runs as several (PIVOT without an IN (...) list "
                      "creates a type first)")
    else:
        what = _describe(statement, kind.name.replace("_", " "))
        raise _refuse(f"EXPLAIN of {what}" if explained else what)


def _parse(connection, sql: str) -> list:
    try:
        return connection.extract_statements(sql)
    except duckdb.Error as error:
        raise BoltInputError(str(error)) from None


def run_query(connection: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """The result of the last statement of `sql`, when every statement is a read; else BoltInputError.

    Every statement is checked before any runs, so a refused statement anywhere in the text means
    nothing runs. DuckDB errors (unknown column, ...) are raised as BoltInputError too.
    """
    statements = _parse(connection, sql)
    if not statements:
        raise BoltInputError("bolt sql: no statement to run")
    for statement in statements:
        _check(connection, statement)
    try:
        # Reads change nothing, so only the last one needs to run; the others are still bound,
        # which reports their errors. connection.sql(SELECT) is lazy: it runs on to_arrow_table.
        relations = [connection.sql(statement.query) for statement in statements]
        return relations[-1].to_arrow_table()
    except duckdb.Error as error:
        raise BoltInputError(str(error)) from None
