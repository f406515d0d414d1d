"""How stages are cached: on their inputs and on all the code they run, results kept in the
round directory, and a hit honoured only while the files it names are intact.

A stage's key is (its inputs by content) + (the source of every project module its module
reaches through imports, and every SQL file those modules read), found by reading the code
(core/imports.py), so no hand-kept list can miss a module: edit the loss in policy/logprobs.py
and the training stage runs again, while the sampling stage, which never reaches it, stays
cached. Stage outputs are TableRef/ModelRef values with a content digest, so a changed upstream
table changes every downstream key, and an upstream stage recomputed to the same content leaves
them valid. Prefect's default policy includes the flow run id (nothing would be reused across
runs), hence an explicit policy.

Paths under the runs directory enter a key relative to it (core/relocation.py), so a moved or
copied runs directory keeps every stage. Before Prefect reads a record, the policy re-roots it
if it was written under another root, and checks that every file its result names is there with
the recorded content (core/intact.py): a missing or changed file removes the record, with one
log line naming the file, and the stage runs again.
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
from prefect.logging import get_run_logger
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from bolt_tasks.core.duck import sql_file
from bolt_tasks.core.imports import import_closure, module_file, sql_files_read
from bolt_tasks.core.intact import Damaged, intact
from bolt_tasks.core.memory import release_accelerator_memory
from bolt_tasks.core.relocation import rebased, recorded_root, runs_relative
from bolt_tasks.core.storage import ModelRef, TableRef, atomic_path

RECORDS = ".prefect-cache"


def content_identity(value, root: str | None = None):
    """What an input means for caching: refs by path and content digest (not by how long they
    took to make, nor by their files' mtimes), dataclasses and containers element by element,
    pydantic models as JSON, paths under the runs directory `root` relative to it."""
    if isinstance(value, (TableRef, ModelRef)):
        return [type(value).__name__, runs_relative(value.path, root), value.digest]
    if is_dataclass(value) and not isinstance(value, type):
        return [type(value).__name__, {f.name: content_identity(getattr(value, f.name), root) for f in fields(value)}]
    if isinstance(value, BaseModel):
        return [type(value).__name__, content_identity(value.model_dump(mode="json"), root)]
    if isinstance(value, dict):
        return {str(k): content_identity(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content_identity(v, root) for v in value]
    if isinstance(value, (str, Path)):
        return runs_relative(str(value), root)
    return value


def code_sources(module: str) -> dict[str, str]:
    """Source text of every project module `module` reaches and of every SQL file they read,
    by name: what a stage defined in `module` runs."""
    modules = import_closure(module)
    sources = {name: module_file(name).read_text() for name in modules}
    for sql in sorted(set().union(*(sql_files_read(name) for name in modules))):
        sources[f"sql/{sql}.sql"] = sql_file(sql).read_text()
    return sources


@dataclass
class StageCache(CachePolicy):
    """A stage's key: its inputs by content identity (but `ignore`), all the code its module
    reaches, and `extra`'s key. With `records` (the directory Prefect keeps the stage's records
    in, under the runs directory `runs_root`), a record found for the key is re-rooted and
    checked before Prefect reads it."""

    ignore: tuple[str, ...] = ()
    extra: CachePolicy | None = None
    runs_root: str | None = None
    records: str | None = None

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        kept = {k: content_identity(v, self.runs_root) for k, v in sorted((inputs or {}).items())
                if k not in self.ignore}
        parts = [hash_objects(kept, raise_on_failure=True),
                 hash_objects(code_sources(task_ctx.task.fn.__module__), raise_on_failure=True)]
        if self.extra is not None:
            parts.append(self.extra.compute_key(task_ctx, inputs, flow_parameters, **kwargs))
        key = hash_objects(parts, raise_on_failure=True)
        if self.records is not None:
            _check_record(task_ctx, Path(self.records) / key, self.runs_root)
        return key


def _check_record(task_ctx, record: Path, root: str | None) -> None:
    """Leave the record at `record` only if it is readable and every file its result names is
    intact, re-rooted to `root` and with the files' stamps as found (rewritten if either
    changed); otherwise remove it, saying which file, so that the stage runs again."""
    from prefect.results import ResultRecord

    try:
        stored = ResultRecord.deserialize(record.read_bytes())
    except FileNotFoundError:
        return
    except Exception as error:  # a record Prefect could not read either: the stage runs again
        get_run_logger().warning(f"cache record {record} cannot be read ({error}); running the stage again")
        _forget(task_ctx, record)
        return
    result = stored.result
    old_root = recorded_root(stored.metadata.storage_key or "", record, root) if root else None
    if old_root is not None:
        result = rebased(result, old_root, root)
    try:
        checked = intact(result)
    except Damaged as damage:
        get_run_logger().warning(f"{damage}; running the stage again")
        _forget(task_ctx, record)
        return
    if old_root is not None or not _same(checked, stored.result):
        metadata = stored.metadata.model_copy(update={"storage_key": str(record)})
        with atomic_path(record) as temp:
            Path(temp).write_bytes(ResultRecord(metadata=metadata, result=checked).serialize())
        _forget(task_ctx, record, keep_file=True)


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # a value without a plain equality: rewrite rather than guess
        return False


def _forget(task_ctx, record: Path, keep_file: bool = False) -> None:
    """Remove the record (unless `keep_file`) and any copy Prefect holds of it in memory."""
    if not keep_file:
        record.unlink(missing_ok=True)
    store = getattr(task_ctx, "result_store", None)
    if store is not None:
        store.cache.pop(str(record), None)


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
    policy = StageCache(ignore=ignore_inputs, extra=extra_policy)

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


def stored_in(task_, directory: str | Path, runs_root: str | Path):
    """The same task with its cache records kept in `directory` (deleting it forgets them), a
    directory under the runs directory `runs_root`, whose paths its keys name relative to it."""
    records = Path(directory) / RECORDS
    policy = task_.cache_policy
    if isinstance(policy, StageCache):
        policy = dataclasses.replace(policy, runs_root=str(runs_root), records=str(records))
    return task_.with_options(result_storage=records, cache_policy=policy)
