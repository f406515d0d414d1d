"""The scoring stage: stages/verifiers.py's score_rollouts as a cached Prefect task, keyed also on
a user's verifier code."""

from __future__ import annotations

from prefect.cache_policies import CachePolicy
from prefect.utilities.hashing import hash_objects

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import TaskConfig
from bolt_tasks.core.storage import TableRef
from bolt_tasks.stages.verifiers import score_rollouts, verifier_code


class VerifierCode(CachePolicy):
    """Cache key part: the user's verifier code (the input `task`'s verifier)."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        return hash_objects(verifier_code(inputs["task"].verifier_name), raise_on_failure=True)


@stage("score-rollouts", extra_policy=VerifierCode())
def score_task(prompts: TableRef, rollouts: TableRef, task: TaskConfig, out_path: str) -> TableRef:
    return score_rollouts(prompts.read(), rollouts.read(), task, out_path)
