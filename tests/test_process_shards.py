"""The processes executor's device pinning (core/process_shards.py), without a GPU: the groups
and the claims are plain data and files."""

import os

import pytest

from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.process_shards import claim_devices, device_groups


def test_one_worker_per_gpu_or_per_tensor_parallel_group():
    devices = [str(i) for i in range(8)]
    assert device_groups(devices, 1, None) == [[d] for d in devices]
    assert device_groups(devices, 2, None) == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    assert device_groups(["3", "5", "7"], 1, 2) == [["3"], ["5"]]
    assert device_groups([], 1, 4) == []  # no GPU: workers run unpinned
    with pytest.raises(BoltInputError, match="execution.workers=5 worker processes need 10 GPUs"):
        device_groups(devices, 2, 5)


def test_each_worker_claims_a_group_no_other_has(tmp_path, monkeypatch):
    groups = [["0", "1"], ["2", "3"]]
    seen = []
    for _ in groups:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
        claim_devices(str(tmp_path), groups)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["0,1", "2,3"]
    with pytest.raises(RuntimeError, match="more worker processes than device groups"):
        claim_devices(str(tmp_path), groups)
