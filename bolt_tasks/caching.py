"""How stages are cached: on their inputs and their source, results kept under the runs dir.

Stage outputs are TableRef/ModelRef values that carry a content digest, so a changed upstream
table changes every downstream cache key. Prefect's default policy includes the flow run id
(nothing would be reused across runs), hence an explicit policy. The source part hashes the
stage's whole module, not only the thin task wrapper, so editing a stage's logic re-runs it.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, CachePolicy
from prefect.utilities.hashing import hash_objects

from bolt_tasks.duck import sql_text


@dataclass
class StageSource(CachePolicy):
    """Cache key part: the source of the module defining the task and of the SQL it runs."""

    sql_files: tuple[str, ...] = ()

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        module = sys.modules[task_ctx.task.fn.__module__]
        sources = [inspect.getsource(module)] + [sql_text(name) for name in self.sql_files]
        return hash_objects(*sources, raise_on_failure=True)


def stage(
    name: str, sql_files: tuple[str, ...] = (), extra_policy: CachePolicy | None = None,
    ignore_inputs: tuple[str, ...] = (),
):
    """Decorator for a cached BOLT stage task: keyed on inputs (but `ignore_inputs`), module
    source and its SQL."""
    inputs = INPUTS
    for name_ in ignore_inputs:
        inputs = inputs - name_
    policy = inputs + StageSource(sql_files=sql_files)
    if extra_policy is not None:
        policy = policy + extra_policy
    return task(name=name, cache_policy=policy, persist_result=True)


def stored_in(task_, directory: str | Path):
    """The same task with its cache records kept in `directory` (deleting it forgets them)."""
    return task_.with_options(result_storage=Path(directory) / ".prefect-cache")
