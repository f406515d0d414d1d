"""Shards side by side in worker processes of this machine: every GPU of a node samples, no Ray.

Each worker is a process of Prefect's ProcessPoolTaskRunner that runs the shards' Prefect tasks
(cached as in this process). On a GPU machine each worker claims its own devices before anything
in it touches CUDA: CUDA_VISIBLE_DEVICES is set to its share of the visible devices (one each, or
tensor_parallel_size each for a sharded vLLM engine), so two shards never share a GPU. Without a
GPU the workers just run side by side, which is how it is tested here.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

from bolt_tasks.core.errors import BoltInputError


def visible_devices() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named:
        return [device.strip() for device in named.split(",") if device.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def device_groups(devices: list[str], per_worker: int, workers: int | None) -> list[list[str]]:
    """Disjoint groups of `per_worker` devices, one group a worker (all that fit by default);
    none without GPUs (the workers are then not pinned)."""
    if not devices:
        return []
    fit = len(devices) // per_worker
    if workers is None:
        workers = fit
    if workers > fit:
        raise BoltInputError(
            f"execution.workers={workers} worker processes need {workers * per_worker} GPUs "
            f"({per_worker} each), but {len(devices)} are visible ({','.join(devices)})")
    return [devices[i * per_worker:(i + 1) * per_worker] for i in range(workers)]


def claim_devices(claims: str, groups: list[list[str]]) -> None:
    """Worker start-up (the pool's initializer): take the first device group no other worker
    has taken (an exclusive file per group), and make it the only one this process sees."""
    for index, group in enumerate(groups):
        try:
            descriptor = os.open(Path(claims) / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.close(descriptor)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(group)
        return
    raise RuntimeError(f"more worker processes than device groups ({len(groups)})")


class ProcessShards(AbstractContextManager):
    """`with ProcessShards(workers, gpus_per_worker) as shards: shards.map(task, calls)`."""

    def __init__(self, workers: int | None, gpus_per_worker: int = 1):
        groups = device_groups(visible_devices(), gpus_per_worker, workers)
        self.workers = len(groups) or workers or 1
        self.claims = tempfile.TemporaryDirectory(prefix="bolt-devices-")
        self.runner = self._runner(groups)

    def _runner(self, groups: list[list[str]]):
        from prefect.task_runners import ProcessPoolTaskRunner

        if not groups:
            return ProcessPoolTaskRunner(max_workers=self.workers)
        return ProcessPoolTaskRunner(max_workers=self.workers, initializer=claim_devices,
                                     initargs=(self.claims.name, groups))

    def __enter__(self) -> ProcessShards:
        self.runner.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.runner.__exit__(*exc_info)
        finally:
            self.claims.cleanup()

    def map(self, task, calls: list[dict], gpus: float = 0) -> list:
        futures = [self.runner.submit(task, parameters=call) for call in calls]
        return [future.result() for future in futures]
