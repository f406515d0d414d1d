"""What each stage asks a Ray cluster for: GPU stages GPUs where the cluster (not this machine)
has them, scoring CPUs only, training workers a GPU each on a GPU cluster."""

import pytest

from bolt_tasks.core import executors
from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.core.config_execution import ExecutionConfig
from bolt_tasks.policy import ray_training


@pytest.fixture
def cluster_with(monkeypatch):
    def set_gpus(gpus: float):
        monkeypatch.setattr(executors, "cluster_gpus", lambda: gpus)
    return set_gpus


@pytest.mark.parametrize("cluster, per_shard, sampling, scoring", [
    (8, None, 2, 0),    # vLLM with tensor-parallel 2 on a GPU cluster; the verifier pool on CPUs
    (0, None, 0, 0),    # a CPU cluster: nothing asks for a GPU
    (8, 1.0, 1.0, 0),   # gpus_per_shard overrides the GPU stages only
])
def test_gpu_stages_ask_for_the_clusters_gpus_and_scoring_for_none(cluster_with, cluster, per_shard,
                                                                    sampling, scoring):
    cluster_with(cluster)
    shards = executors.RayShards(ExecutionConfig(executor="ray", gpus_per_shard=per_shard), runner=None)
    assert shards.gpus_asked(2) == sampling and shards.gpus_asked(0) == scoring


@pytest.mark.parametrize("cluster, asked, gpu, resources", [
    (8, None, True, {"CPU": 1.0, "GPU": 1.0}),
    (0, None, False, {"CPU": 1.0}),
    (8, 0.0, False, {"CPU": 1.0}),  # CPU training on a GPU cluster, when asked
])
def test_training_workers_ask_for_a_gpu_each_on_a_gpu_cluster(cluster_with, cluster, asked, gpu, resources):
    cluster_with(cluster)
    training = TrainingConfig(launcher="ray", workers=4)
    scaling = ray_training.scaling(training, ExecutionConfig(executor="ray", training_gpus_per_worker=asked,
                                                             training_placement="spread"))
    assert scaling.num_workers == 4 and scaling.use_gpu is gpu
    assert scaling.resources_per_worker == resources and scaling.placement_strategy == "SPREAD"
