"""The runs directory's MLflow store, moved with it.

MLflow's SQLite store records absolute paths: every experiment's artifact location and every
run's artifact URI (file:///<runs>/mlartifacts/...), and BOLT's tags and dataset sources name
round directories. Opened under another root than the one it was written under (the runs
directory was moved or copied), the store has every such path moved to the new root, in one
transaction, so the MLflow UI finds the plots, tables and models beside it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from bolt_tasks.core.relocation import rebased

ARTIFACTS = "mlartifacts"


def written_root(connection: sqlite3.Connection) -> str | None:
    """The runs root the store was written under: the folder holding the mlartifacts directory
    its experiments' artifact locations name."""
    for (location,) in connection.execute("SELECT artifact_location FROM experiments ORDER BY experiment_id"):
        parsed = urlparse(location or "")
        if parsed.scheme != "file":
            continue
        parts = Path(unquote(parsed.path)).parts
        if ARTIFACTS in parts:
            return str(Path(*parts[: parts.index(ARTIFACTS)]))
    return None


def _text_columns(connection: sqlite3.Connection) -> list[tuple[str, str]]:
    tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [(table, column) for table in tables
            for _, column, kind, *_ in connection.execute(f'PRAGMA table_info("{table}")')
            if any(word in (kind or "").upper() for word in ("CHAR", "TEXT", "CLOB"))]


def relocate_store(store: Path, root: Path) -> str | None:
    """Move every path under the root `store` was written under to `root`; the old root, or None
    when the store was already written here."""
    connection = sqlite3.connect(store)
    try:
        old = written_root(connection)
        if old is None or old == str(root):
            return None
        with connection:
            for table, column in _text_columns(connection):
                rows = connection.execute(f'SELECT rowid, "{column}" FROM "{table}" WHERE instr("{column}", ?) > 0',
                                          (old,)).fetchall()
                for rowid, value in rows:
                    moved = rebased(value, old, str(root))
                    if moved != value:
                        connection.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?', (moved, rowid))
        return old
    finally:
        connection.close()
