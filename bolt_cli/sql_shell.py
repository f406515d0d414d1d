"""`bolt sql` on a terminal: query results as tables, and a small read-only prompt."""

from __future__ import annotations

import json
import textwrap

import pyarrow as pa
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.readonly_sql import run_query
from bolt_tasks.core.tables import VIEWS

MAX_ROWS = 50
MAX_CELL = 60


def _cell(value) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, str):
        text = value.replace("\n", "\\n")
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 1] + "…"
    return Text(text)


def result_table(table: pa.Table, max_rows: int = MAX_ROWS) -> Table:
    """A rich Table of the first max_rows rows, with the row count as caption."""
    shown = table.slice(0, max_rows)
    caption = (f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}" if table.num_rows <= max_rows
               else f"first {max_rows} of {table.num_rows} rows (add ORDER BY / LIMIT to choose them)")
    rich_table = Table(caption=caption, caption_justify="left")
    for field in table.schema:
        numeric = any(test(field.type) for test in (pa.types.is_integer, pa.types.is_floating,
                                                     pa.types.is_decimal))
        rich_table.add_column(Text(field.name), justify="right" if numeric else "left",
                              no_wrap=True, overflow="ellipsis")
    columns = [column.to_pylist() for column in shown.columns]
    for row in zip(*columns):
        rich_table.add_row(*(_cell(value) for value in row))
    return rich_table


def print_result(console: Console, table: pa.Table, max_rows: int = MAX_ROWS) -> None:
    """Print a query result: EXPLAIN's plan as text, anything else as a table."""
    if table.column_names == ["explain_key", "explain_value"]:
        for value in table.column("explain_value").to_pylist():
            console.print(Text(str(value)))
        return
    rendered = result_table(table, max_rows)
    if not console.is_terminal:
        # A pipe or file has no width to fit: print the table as wide as its columns need.
        width = Measurement.get(console, console.options.update(max_width=100_000), rendered).maximum
        console = Console(file=console.file, width=max(width, console.width), highlight=False)
    console.print(rendered)


def usage(runs_dir: str) -> str:
    views = textwrap.fill(", ".join(spec.view for spec in VIEWS), width=88)
    return (
        "bolt sql runs read-only SQL over every table of a runs directory, one view per table\n"
        f"({views})\n"
        "with `pipeline` and `round` columns. Pass the query as an argument:\n"
        "    bolt sql \"SELECT pipeline, round, count(*) FROM rollouts GROUP BY ALL ORDER BY ALL\""
        f" --runs-dir {runs_dir}\n"
        "or run `bolt sql` without one in a terminal for a prompt. With the duckdb CLI instead:\n"
        f"    bolt views --runs-dir {runs_dir} > views.sql && duckdb -init views.sql"
    )


def shell(connection, console: Console, read=input) -> int:
    """A tiny read-only prompt: one query per line; an empty line, .quit or end of input exits."""
    try:
        import readline  # noqa: F401  (line editing and history for input(), where available)
    except ImportError:
        pass
    tables = ", ".join(row[0] for row in connection.execute("SHOW TABLES").fetchall())
    console.print(f"read-only SQL over {tables}; one query per line, empty line or .quit to exit",
                  highlight=False)
    while True:
        try:
            line = read("bolt sql> ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return 0
        if not line or line in {".quit", ".exit", "quit", "exit"}:
            return 0
        try:
            print_result(console, run_query(connection, line))
        except BoltInputError as error:
            console.print(Text.assemble(("error:", "red"), f" {error}"), soft_wrap=True)
        except KeyboardInterrupt:
            console.print("interrupted")
