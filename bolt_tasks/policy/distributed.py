"""One training process of a distributed fit: under torchrun (`python -m torch.distributed.run ...
-m bolt_tasks.policy.distributed JOB.json`, policy/torchrun.py writes the job and starts it) or
as a Ray Train worker (policy/ray_training.py), which sets up the process group itself.

Each process loads the start model, wraps it (DDP, or FSDP2 fully_shard with its parameters,
gradients and optimizer state sharded), fits its slice of every batch (training.fit), and the
policy is saved once: rank 0 writes it, from the consolidated state dict under FSDP, atomically.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.core.processes import die_with_parent
from bolt_tasks.core.tables import TRAIN_LOG
from bolt_tasks.policy.modeling import save_policy_atomic
from bolt_tasks.policy.training import (
    Replicas,
    ResponseLogprobs,
    autocasts,
    check_finite,
    finished_model,
    fit,
    prepare_model,
    weighted_examples,
)


class ProcessGroupReplicas(Replicas):
    """The processes of the default process group; numbers combined by all-reduce."""

    def __init__(self, device: torch.device):
        super().__init__(dist.get_rank(), dist.get_world_size())
        self.device = device

    def _reduce(self, value, dtype, op):
        tensor = torch.tensor([value], dtype=dtype, device=self.device)
        dist.all_reduce(tensor, op=op)
        return tensor.item()

    def total(self, value: float) -> float:
        return self._reduce(value, torch.float64, dist.ReduceOp.SUM)

    def most(self, value: int) -> int:
        return int(self._reduce(value, torch.int64, dist.ReduceOp.MAX))


def wrap(model, training: TrainingConfig, device: torch.device):
    """The policy's ResponseLogprobs under DDP, or FSDP2 (each decoder layer its own unit, then
    the root: embeddings, final norm, head)."""
    scorer = ResponseLogprobs(model)
    if training.parallelism == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(scorer, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    precision = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                 if autocasts(device, training.autocast) else MixedPrecisionPolicy())
    for layer in model.model.layers:
        fully_shard(layer, mp_policy=precision)
    return fully_shard(scorer, mp_policy=precision)


def full_state_dict(wrapped, training: TrainingConfig) -> dict:
    """The whole policy's parameters on the CPU (a collective under FSDP: every rank calls it)."""
    if training.parallelism == "ddp":
        return wrapped.module.policy.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(wrapped, options=options)
    return {name.removeprefix("policy."): value for name, value in state.items()}


def fit_job(rollouts_path: str, weights_path: str, start_model: str, training: TrainingConfig,
            out_dir: str, log_path: str) -> dict:
    """What every rank of a distributed fit is given (JSON-ready): its inputs and where rank 0
    saves the policy and the loss log."""
    return {"rollouts": rollouts_path, "weights": weights_path, "start_model": start_model,
            "training": training.model_dump(mode="json"), "out_dir": out_dir, "log_path": log_path}


def fit_and_save(job: dict, device: torch.device) -> None:
    """This rank's part of the fit, in the default process group; rank 0 saves the policy and the
    loss log."""
    training = TrainingConfig.model_validate(job["training"])
    model, tokenizer = prepare_model(job["start_model"], training, device)
    examples = weighted_examples(pq.read_table(job["rollouts"]), pq.read_table(job["weights"]))
    model = wrap(model, training, device)
    log = fit(model, tokenizer.pad_token_id, examples, training, ProcessGroupReplicas(device))
    state = full_state_dict(model, training)
    if dist.get_rank() == 0:
        if training.parallelism == "ddp":
            policy = model.module.policy
        else:  # the consolidated parameters, in an unsharded copy of the start model
            policy = prepare_model(job["start_model"], training, torch.device("cpu"))[0]
            policy.load_state_dict(state)
        policy = finished_model(policy, training.checkpoint_dtype)
        check_finite(policy)
        save_policy_atomic(policy, tokenizer, job["out_dir"])
        TRAIN_LOG.write(pa.table(log, schema=TRAIN_LOG.schema), job["log_path"])
    dist.barrier()


def run(job: dict) -> None:
    """A torchrun process: the process group from torchrun's environment, then the fit."""
    on_gpu = torch.cuda.is_available()
    dist.init_process_group("nccl" if on_gpu else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    try:
        fit_and_save(job, device)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    die_with_parent()  # torchrun's agent is the parent: if it is killed, so is every rank
    # rank 0's progress lines (core/progress.py) on its stdout, which the stage relays
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    run(json.loads(Path(sys.argv[1]).read_text()))
