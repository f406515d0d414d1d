"""The embedded reference's bootstrap (stages/reference.py's train_reference) as a cached Prefect
task."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import ReferenceConfig
from bolt_tasks.core.storage import ModelRef
from bolt_tasks.stages.reference import train_reference


@stage("bootstrap-reference")
def bootstrap_reference_task(
    reference: ReferenceConfig, split_seed: int, heldout_prompts: int, out_dir: str
) -> ModelRef:
    """Keyed on the recipe and the held-out split only, so rounds with any number of training
    prompts share one reference."""
    train_reference(reference, split_seed, heldout_prompts, out_dir)
    return ModelRef.of_directory(out_dir)
