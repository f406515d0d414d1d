"""Where a round's work runs: in this process, or its shards and training ranks on a Ray cluster
(configuration)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bolt_tasks.core.config_task import _Frozen


class ExecutionConfig(_Frozen):
    """Who runs the sharded stages (sampling, scoring, held-out evaluation) and what Ray tasks and
    training workers ask of the cluster. The results do not depend on it, so it is no part of any
    stage's cache key."""

    executor: Literal["local", "processes", "ray"] = Field(
        "local",
        description="local: the shards run one after another in this process. processes: side by "
        "side in `workers` worker processes of this machine, each pinned to its own GPU "
        "(CUDA_VISIBLE_DEVICES) when there are GPUs; set sampling.shards to at least `workers`. "
        "ray: each shard is a Ray task (through prefect-ray) on the cluster at ray_address; every "
        "node must see the runs directory at the same path (shared storage).",
    )
    workers: int | None = Field(
        None, ge=1,
        description="processes executor: worker processes. Empty: one per visible GPU (over "
        "sampling.tensor_parallel_size), or 1 without a GPU.",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join (ray start --head prints it; 'auto' finds a local one). "
        "Empty: a Ray instance on this machine for the duration of the run.",
    )
    cpus_per_shard: float = Field(1.0, gt=0, description="CPUs a Ray shard task asks for.")
    gpus_per_shard: float | None = Field(
        None, ge=0,
        description="GPUs a Ray shard task of a GPU stage (sampling, held-out evaluation) asks for; "
        "scoring shards ask for CPUs only. Empty: when the Ray cluster has GPUs, "
        "sampling.tensor_parallel_size for vLLM and 1 for transformers; else 0.",
    )
    training_cpus_per_worker: float = Field(
        1.0, gt=0, description="training.launcher=ray: CPUs each training worker asks for.")
    training_gpus_per_worker: float | None = Field(
        None, ge=0,
        description="training.launcher=ray: GPUs each training worker asks for. Empty: 1 when the "
        "Ray cluster has GPUs (the ranks talk over NCCL), else 0 (gloo).",
    )
    training_placement: Literal["pack", "spread"] = Field(
        "pack",
        description="training.launcher=ray: pack the workers onto as few nodes as hold them (less "
        "traffic between nodes), or spread them over as many nodes as possible.",
    )
    shard_retries: int = Field(
        2, ge=0,
        description="Ray re-runs a shard whose worker process or node died this many times (its "
        "part is written atomically, so a retry leaves no duplicate rows).",
    )
