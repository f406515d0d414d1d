"""The reference model's stages: a GGUF checkpoint converted once (keyed on its content), a
user's folder or hub id resolved (policy/model_files.py has the lookups)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from bolt_tasks.core.caching import stage
from bolt_tasks.core.storage import ModelRef, directory_digest
from bolt_tasks.policy.model_files import convert_gguf


@stage("convert-reference")
def convert_reference_task(gguf: str, gguf_digest: str, out_dir: str) -> ModelRef:
    """Keyed on the checkpoint's content (gguf_digest): converted once, then reused."""
    convert_gguf(Path(gguf), out_dir)
    return ModelRef.of_directory(out_dir)


@task(name="resolve-reference", cache_policy=NO_CACHE)
def resolve_model_task(model: str) -> ModelRef:
    """A user's model: a local directory (digest of its files) or a hub id (the id itself).
    Never cached: the directory may have changed since the last run."""
    if Path(model).is_dir():
        return ModelRef(str(Path(model).resolve()), directory_digest(model))
    return ModelRef(model, f"hub:{model}")
