"""How stages are cached: on their inputs and their source, results kept under the runs dir.

Stage outputs are TableRef/ModelRef values that carry a content digest, so a changed upstream
table changes every downstream cache key, and an upstream stage recomputed to the same content
(a rebuilt reference, say) leaves them valid. Prefect's default policy includes the flow run id
(nothing would be reused across runs), hence an explicit policy. The source part hashes the
stage's whole module, not only the thin task wrapper, so editing a stage's logic re-runs it.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from bolt_tasks.core.duck import sql_text
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
    return value


@dataclass
class StageInputs(CachePolicy):
    """Cache key part: the task's inputs by content identity, except `ignore`."""

    ignore: tuple[str, ...] = ()

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs: Any) -> str | None:
        kept = {k: content_identity(v) for k, v in sorted((inputs or {}).items()) if k not in self.ignore}
        return hash_objects(kept, raise_on_failure=True)


@dataclass
class StageSource(CachePolicy):
    """Cache key part: the source of the module defining the task, of the `modules` doing its
    work elsewhere, and of the SQL it runs."""

    sql_files: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        modules = [task_ctx.task.fn.__module__, *self.modules]
        sources = [inspect.getsource(importlib.import_module(name)) for name in modules]
        sources += [sql_text(name) for name in self.sql_files]
        return hash_objects(*sources, raise_on_failure=True)


def stage(
    name: str, sql_files: tuple[str, ...] = (), extra_policy: CachePolicy | None = None,
    ignore_inputs: tuple[str, ...] = (), modules: tuple[str, ...] = (),
):
    """Decorator for a cached BOLT stage task: keyed on inputs (but `ignore_inputs`), the source
    of its module and of `modules`, and its SQL."""
    policy = StageInputs(ignore=ignore_inputs) + StageSource(sql_files=sql_files, modules=modules)
    if extra_policy is not None:
        policy = policy + extra_policy
    return task(name=name, cache_policy=policy, persist_result=True)


def stored_in(task_, directory: str | Path):
    """The same task with its cache records kept in `directory` (deleting it forgets them)."""
    return task_.with_options(result_storage=Path(directory) / ".prefect-cache")
