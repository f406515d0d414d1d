"""The prompts stage: stages/prompts.py's write_prompts as a cached Prefect task, keyed also on
the bytes of the user's prompt files."""

from __future__ import annotations

from pathlib import Path

from prefect.cache_policies import CachePolicy
from prefect.utilities.hashing import hash_objects

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.storage import TableRef, file_digest
from bolt_tasks.stages.prompts import write_prompts


class PromptFilesContent(CachePolicy):
    """Cache key part: the bytes of the user's prompt files, so an edited file is read again."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        task = inputs["task"]
        files = [Path(f) for f in (task.prompts_file, task.heldout_file) if f is not None]
        return hash_objects(*[file_digest(f) if f.is_file() else "missing" for f in files])


@stage("prompts", extra_policy=PromptFilesContent())
def prompts_task(task: TaskConfig, out_path: str) -> TableRef:
    return write_prompts(task, out_path)
