"""The comparison stage: stages/comparison.py's combine_evaluations (sql/eval.sql) as a cached
Prefect task."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.storage import TableRef
from bolt_tasks.stages.comparison import combine_evaluations


@stage("compare-to-target")
def combine_task(
    reference_eval: TableRef, policy_eval: TableRef, reference_samples: TableRef,
    policy_logprobs: TableRef, beta: float, out_path: str,
) -> TableRef:
    return combine_evaluations(
        reference_eval.path, policy_eval.path, reference_samples.path, policy_logprobs.path,
        beta, out_path,
    )
