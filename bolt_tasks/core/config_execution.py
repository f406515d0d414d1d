"""Where a round's work runs: in this process, or its shards on a Ray cluster (configuration)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bolt_tasks.core.config_task import _Frozen


class ExecutionConfig(_Frozen):
    """Who runs the sharded stages (sampling, scoring, held-out evaluation). The results do not
    depend on it, so it is no part of any stage's cache key."""

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
        description="GPUs a Ray shard task asks for. Empty: sampling.tensor_parallel_size when "
        "this machine has a GPU, else 0.",
    )
    shard_retries: int = Field(
        2, ge=0,
        description="Ray re-runs a shard whose worker process or node died this many times (its "
        "part is written atomically, so a retry leaves no duplicate rows).",
    )
