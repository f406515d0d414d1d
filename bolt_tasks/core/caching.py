"""How stages are cached: on their inputs and on all the code they run, results kept in the
round directory.

A stage's key is (its inputs by content) + (the source of every project module its module
reaches through imports, and every SQL file those modules read), found by reading the code
(core/imports.py), so no hand-kept list can miss a module: edit the loss in policy/logprobs.py
and the training stage runs again, while the sampling stage, which never reaches it, stays
cached. Stage outputs are TableRef/ModelRef values with a content digest, so a changed upstream
table changes every downstream key, and an upstream stage recomputed to the same content leaves
them valid. Prefect's default policy includes the flow run id (nothing would be reused across
runs), hence an explicit policy.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from bolt_tasks.core.duck import sql_file
from bolt_tasks.core.imports import import_closure, module_file, sql_files_read
from bolt_tasks.core.memory import release_accelerator_memory
from bolt_tasks.core.storage import ModelRef, TableRef


def content_identity(value):
    """What an input means for caching: refs by path and content digest (not by how long they
    took to make), dataclasses and containers element by element, pydantic models as JSON."""
    if isinstance(value, (TableRef, ModelRef)):
        return [type(value).__name__, value.path, value.digest]
    if is_dataclass(value) and not isinstance(value, type):
        return [type(value).__name__, {f.name: content_identity(getattr(value, f.name)) for f in fields(value)}]
    if isinstance(value, BaseModel):
        return [type(value).__name__, value.model_dump(mode="json")]
    if isinstance(value, dict):
        return {str(k): content_identity(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content_identity(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class StageInputs(CachePolicy):
    """Cache key part: the task's inputs by content identity, except `ignore`."""

    ignore: tuple[str, ...] = ()

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs: Any) -> str | None:
        kept = {k: content_identity(v) for k, v in sorted((inputs or {}).items()) if k not in self.ignore}
        return hash_objects(kept, raise_on_failure=True)


def code_sources(module: str) -> dict[str, str]:
    """Source text of every project module `module` reaches and of every SQL file they read,
    by name: what a stage defined in `module` runs."""
    modules = import_closure(module)
    sources = {name: module_file(name).read_text() for name in modules}
    for sql in sorted(set().union(*(sql_files_read(name) for name in modules))):
        sources[f"sql/{sql}.sql"] = sql_file(sql).read_text()
    return sources


@dataclass
class StageSource(CachePolicy):
    """Cache key part: all the code the task's module reaches (code_sources)."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        return hash_objects(code_sources(task_ctx.task.fn.__module__), raise_on_failure=True)


def with_seconds(result, seconds: float, finished_at: float):
    """The stage's result with `seconds` and `finished_at` set on every TableRef/ModelRef in it."""
    if isinstance(result, (TableRef, ModelRef)):
        return dataclasses.replace(result, seconds=round(seconds, 3), finished_at=finished_at)
    if isinstance(result, tuple):
        return tuple(with_seconds(item, seconds, finished_at) for item in result)
    return result


def after_stage(name: str) -> None:
    """Between stages the flow process holds no accelerator memory (core/memory.py)."""
    release_accelerator_memory()


def stage(name: str, extra_policy: CachePolicy | None = None, ignore_inputs: tuple[str, ...] = ()):
    """Decorator for a cached BOLT stage task, keyed on its inputs (but `ignore_inputs`) and all
    the code it runs. The refs it returns carry its wall-clock seconds."""
    policy = StageInputs(ignore=ignore_inputs) + StageSource()
    if extra_policy is not None:
        policy = policy + extra_policy

    def decorate(function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            finally:
                after_stage(name)
            return with_seconds(result, time.perf_counter() - start, time.time())

        return task(name=name, cache_policy=policy, persist_result=True)(timed)

    return decorate


def stored_in(task_, directory: str | Path):
    """The same task with its cache records kept in `directory` (deleting it forgets them)."""
    return task_.with_options(result_storage=Path(directory) / ".prefect-cache")
