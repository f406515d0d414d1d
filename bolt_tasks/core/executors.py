"""Who runs a sharded stage's shards: this process, one after another; worker processes of this
machine side by side, one per GPU (core/process_shards.py); or a Ray cluster through
prefect-ray, side by side, each shard a Prefect task run on a Ray worker.

On Ray every node reads the model and writes its part under the runs directory, so that
directory must be the same shared storage at the same path on every node; the runner checks
this on each node before any shard starts. A shard whose worker process or node dies is re-run
by Ray (execution.shard_retries); its part is written atomically under a fixed name, so a retry
replaces, never duplicates, its rows.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import ExitStack
from pathlib import Path

from bolt_tasks.core.config_execution import ExecutionConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.process_shards import ProcessShards
from bolt_tasks.core.storage import write_text_atomic


class LocalShards:
    """Shards run in turn, in this process. Every executor's map takes `gpus`, what one shard of
    the stage uses on a GPU machine (0 for a CPU stage such as scoring)."""

    def map(self, task, calls: list[dict], gpus: float = 0) -> list:
        return [task(**call) for call in calls]


class RayShards:
    """Shards submitted together as Ray tasks (prefect-ray's RayTaskRunner); results in order."""

    def __init__(self, execution: ExecutionConfig, runner):
        self.execution = execution
        self.runner = runner

    def map(self, task, calls: list[dict], gpus: float = 0) -> list:
        from prefect_ray.context import remote_options

        options = {"num_cpus": self.execution.cpus_per_shard, "max_retries": self.execution.shard_retries}
        with remote_options(**options, num_gpus=self.gpus_asked(gpus)):
            futures = [self.runner.submit(task, parameters=call) for call in calls]
        return [future.result() for future in futures]

    def gpus_asked(self, gpus: float) -> float:
        """A CPU stage asks for no GPU; a GPU stage for execution.gpus_per_shard, else for what
        its shard uses when the cluster has GPUs (the cluster's, not this machine's: a head node
        often has none)."""
        if gpus == 0:
            return 0
        if self.execution.gpus_per_shard is not None:
            return self.execution.gpus_per_shard
        return gpus if cluster_gpus() > 0 else 0


def cluster_gpus() -> float:
    """GPUs of the Ray cluster this process is connected to."""
    import ray

    return ray.cluster_resources().get("GPU", 0)


def ray_init_options(execution: ExecutionConfig) -> dict:
    """ray.init keywords: a Ray instance of this machine's size when no cluster is named."""
    if execution.ray_address:
        return {"log_to_driver": True}
    return {"num_cpus": os.cpu_count() or 1, "include_dashboard": False, "log_to_driver": True}


def nodes_not_seeing(marker: Path, token: str) -> list[str]:
    """Hosts of the live Ray nodes on which `marker` does not hold `token`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def look(path: str, expected: str) -> tuple[str, bool]:
        file = Path(path)
        return socket.gethostname(), file.is_file() and file.read_text() == expected

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    answers = ray.get([
        look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
        .remote(str(marker), token)
        for node in nodes
    ], timeout=300)
    return [host for host, seen in answers if not seen]


def require_shared_runs_directory(runs_dir: Path) -> None:
    """Refuse, naming the nodes, when a Ray node does not see `runs_dir` as this process does."""
    token = uuid.uuid4().hex
    marker = Path(runs_dir).resolve() / f".ray-visibility-{token}"
    write_text_atomic(token, marker)
    try:
        blind = nodes_not_seeing(marker, token)
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise BoltInputError(
            f"Ray node(s) {', '.join(sorted(set(blind)))} cannot see the runs directory "
            f"{Path(runs_dir).resolve()}: with execution.executor=ray every node reads the models "
            "and writes its shard's part there, so it must be shared storage (NFS, a cluster file "
            "system) mounted at the same path on every node"
        )


class ShardRunners:
    """`with ShardRunners(execution, runs_dir) as shards: shards.map(task, calls)`."""

    def __init__(self, execution: ExecutionConfig, runs_dir: str | Path, gpus_per_worker: int = 1):
        self.execution = execution
        self.runs_dir = Path(runs_dir)
        self.gpus_per_worker = gpus_per_worker
        self.stack = ExitStack()

    def __enter__(self) -> LocalShards | ProcessShards | RayShards:
        if self.execution.executor == "local":
            return LocalShards()
        if self.execution.executor == "processes":
            return self.stack.enter_context(ProcessShards(self.execution.workers, self.gpus_per_worker))
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as error:
            raise BoltInputError(
                "execution.executor=ray needs Ray and prefect-ray: pip install 'bolt-sft[ray]' "
                f"({error})") from None
        runner = self.stack.enter_context(RayTaskRunner(
            address=self.execution.ray_address, init_kwargs=ray_init_options(self.execution)))
        require_shared_runs_directory(self.runs_dir)
        return RayShards(self.execution, runner)

    def __exit__(self, *exc_info) -> None:
        self.stack.__exit__(*exc_info)
