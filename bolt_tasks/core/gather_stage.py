"""Gathering a sharded stage's parts (core/shards.py's gather_parts) as a cached Prefect task."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.shards import gather_parts
from bolt_tasks.core.storage import TableRef


@stage("gather-parts")
def gather_task(parts: list[TableRef], out_path: str) -> TableRef:
    return gather_parts(parts, out_path)
