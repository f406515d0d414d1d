"""Bootstrap flow: the reference policy pi_ref, built once per recipe and reused after."""

from __future__ import annotations

from prefect import flow

from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import ReferenceConfig, TaskConfig
from bolt_tasks.core.run_names import bootstrap_flow_run_name
from bolt_tasks.core.storage import ModelRef, file_digest
from bolt_tasks.policy.model_files import converted_dir, gguf_file
from bolt_tasks.stages.model_sources import convert_reference_task, resolve_model_task
from bolt_tasks.stages.reference import embedded_reference_dir
from bolt_tasks.stages.reference_stage import bootstrap_reference_task


def reference_policy(reference: ReferenceConfig, task: TaskConfig, runs: RunsDirectory) -> ModelRef:
    """The stages that give pi_ref, run in the calling flow (a round's own log and task list then
    show the bootstrap's progress): the user's model if one is named (a GGUF checkpoint
    converted once into an ordinary folder); otherwise the embedded policy, built or reused."""
    if reference.model:
        gguf = gguf_file(reference.model)
        if gguf is None:
            return resolve_model_task(reference.model)
        digest = file_digest(gguf)
        out_dir = converted_dir(runs, reference.model, digest)
        return stored_in(convert_reference_task, out_dir.parent, runs.root)(str(gguf), digest, str(out_dir))
    out_dir = embedded_reference_dir(runs, reference, task)
    return stored_in(bootstrap_reference_task, out_dir.parent, runs.root)(
        reference, task.seed, task.heldout_prompts, str(out_dir)
    )


@flow(name="bolt-bootstrap", flow_run_name=bootstrap_flow_run_name)
def bootstrap_reference(
    reference: ReferenceConfig = ReferenceConfig(),
    task: TaskConfig = TaskConfig(),
    runs_dir: str = "runs",
) -> ModelRef:
    """Build (or reuse) pi_ref alone, as `bolt bootstrap` does before serving deployments."""
    return reference_policy(reference, task, RunsDirectory.at(runs_dir))
