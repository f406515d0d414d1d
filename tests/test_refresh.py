"""Refreshed rounds: lineage in MLflow, continuing a pipeline, the lock, and crash safety."""

import json
import os
import signal
import time
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.tables import ROUND_TABLES
from cli_runs import bolt, finished_states
from same_rows import assert_same_rows

TINY = ["--set", "reference.steps=60", "--set", "reference.batch_size=32",
        "--train-prompts", "24", "--set", "task.heldout_prompts=16",
        "--set", "evaluation.samples_per_prompt=8", "--samples-per-prompt", "4",
        "--set", "training.batch_size=8",
        "--set", "weighting.train_without_information=true"]
# A longer fit, so a kill lands inside the training stage.
CRASHABLE = TINY + ["--set", "training.epochs=3"]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_refresh_lineage_and_continuation(tmp_path):
    from bolt_cli.main import main

    runs = str(tmp_path)
    assert main(["refresh", "--runs-dir", runs, "--until-round", "1", *TINY]) == 0
    round1 = pq.read_table(tmp_path / "default-refresh" / "round-1" / "rollouts.parquet")
    assert set(round1["sampler_model"].to_pylist()) == {"default-refresh/round-0/policy"}  # in the runs dir
    # pi_1 samples, pi_ref scores: the two log-probs differ, and the weights correct for it.
    assert (round1["sampler_logprob"].to_numpy() != round1["reference_logprob"].to_numpy()).any()

    assert main(["refresh", "--runs-dir", runs, *TINY]) == 0  # adds round 2
    bootstrap_seconds = [
        json.loads((tmp_path / "default-refresh" / f"round-{k}" / "summary.json").read_text())
        ["stage_seconds"]["bootstrap"] for k in range(3)]
    assert bootstrap_seconds[0] > 0 and bootstrap_seconds[1:] == [0, 0]  # built once, in round 0
    # pi_ref is evaluated once, in round 0; later rounds copy it from runs/evaluations
    reference_evals = {(tmp_path / "default-refresh" / f"round-{k}" / "reference_samples.parquet").read_bytes()
                       for k in range(3)}
    assert len(reference_evals) == 1
    assert len(list(RunsDirectory.at(runs).evaluations.iterdir())) == 1 + 3  # pi_ref, pi_1..pi_3

    client = mlflow.MlflowClient(RunsDirectory.at(runs).tracking_uri())
    experiment = client.get_experiment_by_name("bolt-default-refresh").experiment_id
    runs_found = client.search_runs([experiment])
    parents = [r for r in runs_found if r.data.tags.get("bolt.kind") == "refresh"]
    children = sorted((r for r in runs_found if "bolt.round" in r.data.tags),
                      key=lambda r: int(r.data.tags["bolt.round"]))
    assert len(parents) == 2 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} <= {p.info.run_id for p in parents}
    assert children[0].data.tags["bolt.previous_round_run_id"] == ""
    for previous, child in zip(children, children[1:]):
        assert child.data.tags["bolt.previous_round_run_id"] == previous.info.run_id
        assert child.data.tags["bolt.sampler_model"].endswith(
            f"round-{previous.data.tags['bolt.round']}/policy")
    assert all(c.data.tags["prefect.flow_run_id"] for c in children)
    assert all(len(c.inputs.dataset_inputs) == 2 for c in children)
    versions = client.search_model_versions("name='bolt-default-refresh'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
    newest = client.get_model_version_by_alias("bolt-default-refresh", "newest")
    assert newest.run_id == children[-1].info.run_id
    assert any(a.path == "rounds.png" for a in client.list_artifacts(parents[0].info.run_id))
    # the parent carries its configuration; a round's figures sit at step = round, as on the parent
    assert {p.data.params["add_rounds"] for p in parents} == {"1"}
    assert all("round.weighting.beta" in p.data.params for p in parents)
    for child in children:
        history = client.get_metric_history(child.info.run_id, "policy_accuracy")
        assert [m.step for m in history] == [int(child.data.tags["bolt.round"])]
        assert "beta" not in child.data.metrics and "round" not in child.data.metrics


def test_second_invocation_of_a_pipeline_is_refused(tmp_path):
    busy = RunsDirectory.at(tmp_path).pipeline("busy")
    with busy.lock():
        with pytest.raises(BoltInputError, match=r"pipeline 'busy' is being run by pid \d+"):
            with busy.lock():
                pass
    with busy.lock():  # released: usable again
        pass


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = tmp_path_factory.mktemp("uninterrupted")
    result = bolt("refresh", "--runs-dir", str(runs), "--until-round", "2", *CRASHABLE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return runs


def kill_when(runs: Path, ready, log_path: Path):
    """Start the 3-round refresh, SIGKILL it as soon as ready(round-2 dir) holds."""
    with open(log_path, "w") as log:
        # Its own process group: the kill takes everything it started down with it, as a machine
        # crash would, and leaves nothing running.
        process = bolt("refresh", "--runs-dir", str(runs), "--until-round", "2", *CRASHABLE,
                       log=log, start_new_session=True)
        round2 = runs / "default-refresh" / "round-2"
        deadline = time.time() + 400
        while not ready(round2):
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_sigkill_in_training_then_rerun_finishes_with_identical_tables(tmp_path, uninterrupted):
    """Killed as round 2's fit starts: the rerun reuses every finished stage and gives the tables
    of a refresh never killed. (A SIGKILL inside sampling is tests/test_scale_out.py's: the rerun
    redoes only the missing shards; every table is written the same atomic way.)"""
    runs = tmp_path / "runs"
    # Weights done means its cache record too, written ~3 ms after prompt_stats.parquet: the
    # round directory's 4th record (prompts, sample, score, weights).
    kill_when(runs, lambda d: (d / "prompt_stats.parquet").exists()
              and len(list((d / ".prefect-cache").glob("*"))) >= 4, tmp_path / "killed.log")
    round2 = runs / "default-refresh" / "round-2"
    assert not (round2 / "policy").exists(), "the kill missed the training stage"
    expect_cached = {"sample-rollouts": 3, "score-rollouts": 3, "weights": 3}
    for table in round2.glob("*.parquet"):
        pq.read_table(table)  # every table present is whole

    rerun = bolt("refresh", "--runs-dir", str(runs), "--until-round", "2", *CRASHABLE)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    output = rerun.stdout + rerun.stderr
    for task, cached in expect_cached.items():
        states = finished_states(output, task)
        assert states.count("Cached(type=COMPLETED)") == cached, (task, states)
    assert finished_states(output, "bootstrap-reference") == ["Cached(type=COMPLETED)"]
    assert "Completed()" in finished_states(output, "weighted-sft")  # round 2 was trained now

    for k in range(3):
        for spec in ROUND_TABLES:
            got = pq.read_table(runs / "default-refresh" / f"round-{k}" / spec.file_name)
            want = pq.read_table(uninterrupted / "default-refresh" / f"round-{k}" / spec.file_name)
            if spec.name == "rollouts":  # sampler paths name each run's own directory
                got, want = (t.drop_columns(["sampler_model"]) for t in (got, want))
            assert_same_rows(got, want, f"round-{k} {spec.name}")
    # The killed round's MLflow run, left RUNNING by the SIGKILL, was continued and finished:
    # one run per round, all FINISHED.
    client = mlflow.MlflowClient(RunsDirectory.at(runs).tracking_uri())
    rounds = [r for r in client.search_runs([client.get_experiment_by_name("bolt-default-refresh").experiment_id])
              if "bolt.round" in r.data.tags]
    assert sorted(r.data.tags["bolt.round"] for r in rounds) == ["0", "1", "2"]
    assert {r.info.status for r in rounds} == {"FINISHED"}
