"""Prompts stage: the round's prompts as prompts.parquet (stages/prompt_files.py reads them).

User files are JSONL (one object per line) or Parquet, with string fields `prompt` and
`answer` and an optional `id`.
"""

from __future__ import annotations

from pathlib import Path

from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.storage import TableRef
from bolt_tasks.core.tables import PROMPTS
from bolt_tasks.stages.prompt_files import build_prompts


def write_prompts(task: TaskConfig, out_path: str | Path) -> TableRef:
    """The task's training and held-out prompts (built-in, a reasoning-gym generator, or prompt
    files), checked, as prompts.parquet with a `split` column."""
    return PROMPTS.write(build_prompts(task), out_path)
