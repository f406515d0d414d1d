"""Faults inside a round, through the real CLI: a verifier that hangs, raises or is edited, a
valid but minimal configuration, an MLflow store that cannot take the artifacts. Each ends with
right numbers or one sentence, and with nothing left running."""

import json
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.catalogue import RunsDirectory
from cli_runs import bolt, finished_states

pytestmark = pytest.mark.usefixtures("no_process_left", "shared_prefect_server")

# A policy of 40 bootstrap steps is rarely right: these rounds train even with nothing to learn
# (the test of that stop sets it back).
TINY = ["--set", "reference.steps=40", "--set", "reference.batch_size=32", "--train-prompts", "16",
        "--set", "task.heldout_prompts=8", "--set", "evaluation.samples_per_prompt=8",
        "--samples-per-prompt", "4", "--set", "training.batch_size=16",
        "--set", "weighting.train_without_information=true"]
VERIFIERS = '''
import time

def hang(prompt, answer, response, finish_reason):
    time.sleep(3600)

def explode(prompt, answer, response, finish_reason):
    raise RuntimeError("the grader is down")

def exact(prompt, answer, response, finish_reason):
    return float(finish_reason == "stop" and response == answer)

def nothing(prompt, answer, response, finish_reason):
    return 0.0
'''


def run_bolt(tmp_path: Path, *args):
    """`bolt run` on the tiny configuration, in tmp_path, where user_verifiers.py lives."""
    module = tmp_path / "user_verifiers.py"
    if not module.exists():
        module.write_text(VERIFIERS)
    return bolt("run", "--runs-dir", str(tmp_path / "runs"), *TINY, *args, cwd=tmp_path,
                start_new_session=True)


def error_line(result) -> str:
    """The command's own last word on stderr (Prefect's log lines come before it), checked to
    be the only error line with no traceback anywhere (those need --debug)."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-3000:]
    return errors[0]


@pytest.mark.slow
def test_a_verifier_that_never_answers_is_stopped_by_its_time_limit(tmp_path):
    # 2 prompts x 4 samples: each response costs its 2 s time limit
    result = run_bolt(tmp_path, "--set", "task.verifier=user_verifiers:hang",
                      "--set", "task.verifier_timeout_s=2", "--train-prompts", "2")
    round_dir = tmp_path / "runs" / "default" / "round-0"
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert error_line(result) == (
        f"error: verifier 'user_verifiers:hang' could not score 8 of 8 responses (100.0%, above "
        f"task.max_verifier_error_share=0.01); first, prompt {_first_prompt(round_dir)!r} sample 0: "
        f"verifier timed out after 2 s; every error is in {round_dir / 'rewards.parquet'}")
    rewards = pq.read_table(round_dir / "rewards.parquet").to_pylist()
    assert len(rewards) == 8 and {r["error"] for r in rewards} == {"verifier timed out after 2 s"}
    # The stage ran from the rollouts' write to the rewards' write: 2 s x 8 / 2 workers + 10 s.
    stage_seconds = (round_dir / "rewards.parquet").stat().st_mtime - (round_dir / "rollouts.parquet").stat().st_mtime
    assert stage_seconds < 2 * 8 / 2 + 10, stage_seconds
    assert not (round_dir / "weights.parquet").exists()
    # The round's MLflow run was open from the start (its configuration logged) and ended FAILED.
    client = mlflow.MlflowClient(RunsDirectory.at(tmp_path / "runs").tracking_uri())
    [run] = client.search_runs([client.get_experiment_by_name("bolt-default").experiment_id])
    assert run.info.status == "FAILED" and run.data.params["task.verifier"] == "user_verifiers:hang"


@pytest.mark.slow
def test_a_round_with_nothing_to_learn_stops_after_scoring_before_training(tmp_path):
    """No response rewarded: one sentence with the shares and coverage 0.000, exit 1; the
    samples, rewards and weights are kept, nothing is trained or evaluated."""
    result = run_bolt(tmp_path, "--set", "task.verifier=user_verifiers:nothing",
                      "--set", "weighting.train_without_information=false")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    assert error_line(result).startswith(
        "error: NothingToLearn: nothing to learn: 0.0% of the 16 training prompts have unequal "
        "rewards, 0.0% of the responses are rewarded and the coverage is 0.000, so the round stops "
        "before training (its samples and rewards are kept); try more new tokens")
    round_dir = tmp_path / "runs" / "default" / "round-0"
    left = {path.name for path in round_dir.iterdir()}
    assert {"rollouts.parquet", "rewards.parquet", "weights.parquet", "prompt_stats.parquet"} <= left
    assert not left & {"policy", "train_log.parquet", "reference_eval.parquet", "eval.parquet"}
    stats = pq.read_table(round_dir / "prompt_stats.parquet")
    assert not any(stats["covered"].to_pylist()) and not any(stats["informative"].to_pylist())


def _first_prompt(round_dir: Path) -> str:
    return pq.read_table(round_dir / "rollouts.parquet")["prompt_id"][0].as_py()


@pytest.mark.slow
def test_errored_responses_never_count_as_successes(tmp_path):
    # The verifier fails on every response; its fallback reward is the success reward.
    result = run_bolt(tmp_path, "--set", "task.verifier=user_verifiers:explode",
                      "--set", "task.verifier_fallback_reward=1.0",
                      "--set", "task.max_verifier_error_share=1.0",
                      "--set", "evaluation.success_threshold=1.0")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    summary = json.loads((tmp_path / "runs" / "default" / "round-0" / "summary.json").read_text())
    assert summary["coverage"] == 0.0 and summary["ref_accuracy"] == 0.0
    assert summary["policy_accuracy"] == 0.0 and summary["ref_accuracy_greedy"] == 0.0
    assert summary["verifier_errors"] == 64 and summary["heldout_verifier_errors"] == 2 * 8 * 8
    assert ("verifier errors: 64 of 64 training responses and 128 held-out ones could not be "
            "scored") in " ".join(result.stderr.split())


@pytest.mark.slow
def test_editing_the_users_verifier_reruns_scoring_and_what_follows_only(tmp_path):
    first = run_bolt(tmp_path, "--set", "task.verifier=user_verifiers:exact")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    module = tmp_path / "user_verifiers.py"
    module.write_text(VERIFIERS.replace('finish_reason == "stop" and response == answer',
                                        'response.startswith(answer[:1])'))
    second = run_bolt(tmp_path, "--set", "task.verifier=user_verifiers:exact")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    output = second.stdout + second.stderr
    for cached in ("prompts", "bootstrap-reference", "sample-rollouts"):
        assert finished_states(output, cached) == ["Cached(type=COMPLETED)"], cached
    for recomputed in ("score-rollouts", "weights", "weighted-sft", "compare-to-target", "summarize-round"):
        assert finished_states(output, recomputed) == ["Completed()"], recomputed
    assert finished_states(output, "evaluate-policy") == ["Completed()", "Completed()"]


@pytest.mark.slow
def test_one_heldout_prompt_and_eight_samples_finish_with_figures_marked_missing(tmp_path):
    result = run_bolt(tmp_path, "--set", "task.heldout_prompts=1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    summary = json.loads((tmp_path / "runs" / "default" / "round-0" / "summary.json").read_text())
    assert summary["heldout_prompts"] == 1 and summary["accuracy_gain_se"] is None
    assert summary["ref_share_unsolved_in_32"] is None  # pass@32 needs 32 samples
    printed = " ".join(result.stdout.split())
    assert "(SE n/a)" in printed and "expected unsolved in 32 samples: n/a" in printed


@pytest.mark.slow
def test_an_mlflow_store_that_cannot_take_artifacts_fails_the_run_in_mlflow_too(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "mlartifacts").write_text("a file where MLflow wants its artifact directory")
    result = run_bolt(tmp_path)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    assert "mlartifacts" in error_line(result)
    client = mlflow.MlflowClient(RunsDirectory.at(runs).tracking_uri())
    [run] = client.search_runs([client.get_experiment_by_name("bolt-default").experiment_id])
    assert run.info.status == "FAILED"
