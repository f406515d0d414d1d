"""Bootstrap flow: the reference policy pi_ref, built once per recipe and reused after."""

from __future__ import annotations

from prefect import flow

from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import ReferenceConfig, TaskConfig
from bolt_tasks.core.storage import ModelRef
from bolt_tasks.stages.reference import bootstrap_reference_task, embedded_reference_dir, resolve_model_task


@flow(name="bolt-bootstrap")
def bootstrap_reference(
    reference: ReferenceConfig = ReferenceConfig(),
    task: TaskConfig = TaskConfig(),
    runs_dir: str = "runs",
) -> ModelRef:
    """The user's model if one is named; otherwise build (or reuse) the embedded policy."""
    if reference.model:
        return resolve_model_task(reference.model)
    out_dir = embedded_reference_dir(RunsDirectory.at(runs_dir), reference, task)
    return stored_in(bootstrap_reference_task, out_dir.parent)(
        reference, task.seed, task.heldout_prompts, str(out_dir)
    )
