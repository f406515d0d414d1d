"""Past one process: prompt shards write the rows one pass writes, on this process, in worker
processes or on a real local Ray cluster (a worker killed mid-shard included). Refreshed rounds
on a two-node Ray cluster, training there too: tests/test_ray_cluster.py."""

import signal
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli_runs import bolt, session_processes
from same_rows import assert_same_rows

# Small decode batches, so 24 training and 8 held-out prompts make several shards' worth of
# batches (shards start at batch boundaries).
TINY = ["--pipeline", "tiny", "--set", "reference.steps=40", "--set", "reference.batch_size=32",
        "--train-prompts", "24", "--set", "task.heldout_prompts=8", "--samples-per-prompt", "4",
        "--set", "sampling.batch_size=8", "--set", "evaluation.samples_per_prompt=8",
        "--set", "evaluation.batch_size=16", "--set", "training.batch_size=16",
        "--set", "weighting.train_without_information=true"]
COMPARED = ("rollouts", "rewards", "weights", "prompt_stats", "reference_eval", "policy_eval",
            "reference_samples", "policy_samples", "reference_samples_policy_logprobs", "eval",
            "train_log")


def round_tables(runs, pipeline: str = "tiny", index: int = 0) -> dict[str, pa.Table]:
    """The round's tables, rows sorted, without the one column that names the runs directory."""
    tables = {}
    for name in COMPARED:
        table = pq.read_table(f"{runs}/{pipeline}/round-{index}/{name}.parquet")
        table = table.drop([c for c in ("sampler_model",) if c in table.column_names])
        keys = [c for c in ("prompt_id", "sample_idx", "step") if c in table.column_names]
        tables[name] = table.sort_by([(key, "ascending") for key in keys])
    return tables


def assert_same_tables(found: dict, expected: dict) -> None:
    for name, table in expected.items():
        assert found[name].num_rows == table.num_rows > 0, name
        assert_same_rows(found[name], table, name)


def run_ok(*args):
    result = bolt("run", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory):
    runs = tmp_path_factory.mktemp("one-shard")
    run_ok("--runs-dir", str(runs), *TINY)
    return round_tables(runs)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_three_shards_write_the_rows_of_one(one_shard, tmp_path):
    run_ok("--runs-dir", str(tmp_path), *TINY, "--shards", "3")
    assert_same_tables(round_tables(tmp_path), one_shard)
    parts = sorted(p.name for p in (tmp_path / "tiny" / "round-0" / "parts" / "rollouts").iterdir())
    assert parts == [f"shard-0000{i}-of-00003.parquet" for i in (1, 2, 3)]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_two_worker_processes_write_the_rows_of_one(one_shard, tmp_path):
    """The processes executor (one worker per GPU on a GPU node; two unpinned ones here)."""
    run_ok("--runs-dir", str(tmp_path), *TINY, "--shards", "2", "--executor", "processes",
           "--set", "execution.workers=2")
    assert_same_tables(round_tables(tmp_path), one_shard)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_three_shards_on_ray_write_the_rows_of_one_even_when_a_worker_is_killed(one_shard, tmp_path):
    """A whole round on a real local Ray cluster, 3 shards; one worker SIGKILLed mid-shard is
    retried by Ray; every table equals the local single-shard run's, and the Ray instance goes
    with the run."""
    with open(tmp_path / "log", "w") as log:
        process = bolt("run", "--runs-dir", str(tmp_path / "runs"), *TINY, "--shards", "3",
                       "--executor", "ray", log=log, start_new_session=True)
        killed = None
        while process.poll() is None and killed is None:
            for worker in psutil.process_iter():
                try:
                    # a worker's first shard starts with imports and the model load: seconds
                    if " ".join(worker.cmdline()).startswith("ray::sample-rollouts"):
                        time.sleep(0.2)
                        worker.send_signal(signal.SIGKILL)
                        killed = worker.pid
                        break
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            time.sleep(0.02)
        assert process.wait(600) == 0, (tmp_path / "log").read_text()[-3000:]
    output = (tmp_path / "log").read_text()
    assert "Using Ray cluster with 1 nodes" in output
    assert output.count("(sample-rollouts pid=") > 0  # Ray workers ran the shards
    assert killed is not None and "A worker died or was killed while executing a task" in output
    assert "so the task will be retried" in output
    assert_same_tables(round_tables(tmp_path / "runs"), one_shard)
    time.sleep(1)
    assert session_processes(process.pid) == []


@pytest.mark.slow
def test_a_node_that_cannot_see_the_runs_directory_is_refused(tmp_path, monkeypatch):
    """A real Ray node probed for the runs directory: it sees it here; made to look elsewhere
    (the marker lands on another disk, as on a node without the shared mount), it is refused."""
    import ray

    from bolt_tasks.core import executors
    from bolt_tasks.core.errors import BoltInputError

    ray.init(num_cpus=1, include_dashboard=False)
    try:
        executors.require_shared_runs_directory(tmp_path)  # the same machine: seen
        elsewhere = tmp_path / "another-disk"
        elsewhere.mkdir()
        monkeypatch.setattr(executors, "write_text_atomic",
                            lambda text, path: (elsewhere / path.name).write_text(text))
        with pytest.raises(BoltInputError, match="cannot see the runs directory .* shared storage"):
            executors.require_shared_runs_directory(tmp_path)
    finally:
        ray.shutdown()
    assert not list(tmp_path.glob(".ray-visibility-*"))


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_a_rerun_after_a_crash_redoes_only_the_missing_shards(tmp_path):
    from cli_runs import finished_states

    args = ["--runs-dir", str(tmp_path), *TINY, "--train-prompts", "48", "--shards", "3"]
    parts = tmp_path / "tiny" / "round-0" / "parts" / "rollouts"
    # Shards run in turn here: when the second part exists, the first shard has finished,
    # its cache record included.
    with open(tmp_path / "log", "w") as log:
        process = bolt("run", *args, log=log)
        while process.poll() is None and not (parts / "shard-00002-of-00003.parquet").exists():
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (parts / "shard-00003-of-00003.parquet").exists(), "the crash came too late to test anything"
    output = run_ok(*args)
    states = finished_states(output, "sample-rollouts")
    assert len(states) == 3 and states[0] == "Cached(type=COMPLETED)" and states[2] == "Completed()"
    rollouts = pq.read_table(tmp_path / "tiny" / "round-0" / "rollouts.parquet")
    keys = set(zip(rollouts["prompt_id"].to_pylist(), rollouts["sample_idx"].to_pylist()))
    assert rollouts.num_rows == len(keys) == 48 * 4  # nothing lost, nothing twice
