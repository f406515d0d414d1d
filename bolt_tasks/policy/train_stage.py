"""The weighted-SFT stage: the fit in this process (policy/training.py), in torchrun's processes
on this machine (policy/torchrun.py) or in Ray Train workers across the cluster
(policy/ray_training.py), the same policy each way."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.core.config_execution import ExecutionConfig
from bolt_tasks.core.storage import ModelRef, TableRef
from bolt_tasks.policy.ray_training import train_on_ray
from bolt_tasks.policy.torchrun import train_with_torchrun
from bolt_tasks.policy.training import train_policy


@stage("weighted-sft", ignore_inputs=("execution",))
def train_task(
    rollouts: TableRef, weights: TableRef, start_model: ModelRef, training: TrainingConfig,
    out_dir: str, log_path: str, execution: ExecutionConfig = ExecutionConfig(),
) -> tuple[ModelRef, TableRef]:
    if training.launcher == "torchrun":
        train_with_torchrun(rollouts.path, weights.path, start_model.path, training, out_dir, log_path)
        log = TableRef.of_file(log_path)
    elif training.launcher == "ray":
        train_on_ray(rollouts.path, weights.path, start_model.path, training, execution, out_dir, log_path)
        log = TableRef.of_file(log_path)
    else:
        log = train_policy(rollouts.read(), weights.read(), start_model.path, training, out_dir, log_path)
    return ModelRef.of_directory(out_dir), log
