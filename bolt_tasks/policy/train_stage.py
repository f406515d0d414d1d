"""The weighted-SFT stage: the fit in this process (policy/training.py) or in torchrun's
processes (policy/torchrun.py), the same policy either way."""

from __future__ import annotations

from bolt_tasks.core.caching import stage
from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.core.storage import ModelRef, TableRef, directory_digest
from bolt_tasks.policy.torchrun import train_with_torchrun
from bolt_tasks.policy.training import train_policy


@stage("weighted-sft")
def train_task(
    rollouts: TableRef, weights: TableRef, start_model: ModelRef, training: TrainingConfig,
    out_dir: str, log_path: str,
) -> tuple[ModelRef, TableRef]:
    if training.launcher == "torchrun":
        train_with_torchrun(rollouts.path, weights.path, start_model.path, training, out_dir, log_path)
        log = TableRef.of_file(log_path)
    else:
        log = train_policy(rollouts.read(), weights.read(), start_model.path, training, out_dir, log_path)
    return ModelRef(out_dir, directory_digest(out_dir)), log
