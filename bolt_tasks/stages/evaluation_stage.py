"""The evaluation stages: stages/evaluation.py's evaluate_policy and sample_logprobs as cached
Prefect tasks; an evaluation found in the store by content (stages/evaluation_store.py) is copied
instead of sampled again."""

from __future__ import annotations

from pathlib import Path

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import EvaluationConfig, TaskConfig
from bolt_tasks.core.shards import Shard
from bolt_tasks.core.storage import ModelRef, TableRef
from bolt_tasks.stages import evaluation_store
from bolt_tasks.stages.evaluation import evaluate_policy, sample_logprobs
from bolt_tasks.stages.verifiers import verifier_code
from bolt_tasks.stages.verifiers_stage import VerifierCode


@stage("evaluate-policy", extra_policy=VerifierCode())
def evaluate_task(
    prompts: TableRef, model: ModelRef, reference: ModelRef, evaluation: EvaluationConfig,
    task: TaskConfig, out_path: str, samples_path: str, stop: list[str] = (),
    shard: Shard | None = None, store: str | None = None,
) -> tuple[TableRef, TableRef]:
    """`stop`: the round's sampling.stop, so held-out responses end as the rollouts do.
    `store`: where evaluations are kept by content (runs/evaluations): one found there (pi_ref's,
    from an earlier round or pipeline) is copied instead of sampled again."""
    table = prompts.read()
    key = store and evaluation_store.evaluation_key(
        table, model, reference, evaluation, task, list(stop), shard,
        verifier_code(task.verifier_name), __name__)
    found = key and evaluation_store.fetch(Path(store), key, out_path, samples_path)
    if found:
        return found
    result = evaluate_policy(table, model.path, reference.path, evaluation, task, out_path,
                             samples_path, stop, shard)
    if key:
        evaluation_store.keep(Path(store), key, result)
    return result


@stage("logprobs-of-samples")
def sample_logprobs_task(samples: TableRef, model: ModelRef, out_path: str,
                         batch_size: int = 2048) -> TableRef:
    return sample_logprobs(samples.read(), model.path, out_path, batch_size)
