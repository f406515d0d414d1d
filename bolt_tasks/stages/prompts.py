"""Prompts stage: the round's prompts as prompts.parquet (stages/prompt_files.py reads them).

User files are JSONL (one object per line) or Parquet, with string fields `prompt` and
`answer` and an optional `id`.
"""

from __future__ import annotations

from pathlib import Path

from prefect.cache_policies import CachePolicy
from prefect.utilities.hashing import hash_objects

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.storage import TableRef, file_digest
from bolt_tasks.core.tables import PROMPTS
from bolt_tasks.stages.prompt_files import build_prompts


def write_prompts(task: TaskConfig, out_path: str | Path) -> TableRef:
    """The task's training and held-out prompts (built-in, a reasoning-gym generator, or prompt
    files), checked, as prompts.parquet with a `split` column."""
    return PROMPTS.write(build_prompts(task), out_path)


class PromptFilesContent(CachePolicy):
    """Cache key part: the bytes of the user's prompt files, so an edited file is read again."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        task = inputs["task"]
        files = [Path(f) for f in (task.prompts_file, task.heldout_file) if f is not None]
        return hash_objects(*[file_digest(f) if f.is_file() else "missing" for f in files])


@stage("prompts", extra_policy=PromptFilesContent())
def prompts_task(task: TaskConfig, out_path: str) -> TableRef:
    return write_prompts(task, out_path)
