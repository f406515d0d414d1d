"""End to end: the bolt-round flow on a tiny configuration, its caching, MLflow run and errors."""

import json

import pyarrow.parquet as pq
import pytest

from bolt_tasks.config import validate_round_config

TINY = {
    "pipeline": "tiny",
    "task": {"train_prompts": 48, "heldout_prompts": 32},
    "reference": {"steps": 120, "batch_size": 64},
    "sampling": {"samples_per_prompt": 4},
    "training": {"epochs": 1, "batch_size": 32},
    "evaluation": {"samples_per_prompt": 8},
}
TABLES = ("prompts", "rollouts", "rewards", "weights", "prompt_stats", "train_log",
          "reference_eval", "policy_eval", "eval")


@pytest.mark.slow
def test_round_runs_caches_and_tracks(tmp_path):
    import mlflow

    from flows.round import bolt_round

    config = validate_round_config(TINY)
    summary = bolt_round(config=config, runs_dir=str(tmp_path))
    round_dir = tmp_path / "tiny" / "round-0"
    for name in TABLES:
        assert (round_dir / f"{name}.parquet").exists(), name
    rollouts = pq.read_table(round_dir / "rollouts.parquet")
    assert rollouts.num_rows == 48 * 4
    assert {"prompt_id", "sample_idx", "response", "response_token_ids", "sampler_logprob",
            "reference_logprob", "num_tokens", "finish_reason", "sampler_model", "round"} <= set(
        rollouts.column_names)
    weights = pq.read_table(round_dir / "weights.parquet")
    assert weights.num_rows == 48 * 4
    saved = json.loads((round_dir / "summary.json").read_text())
    for key in ("ref_accuracy", "policy_accuracy", "ref_accuracy_greedy", "policy_accuracy_greedy",
                "kl", "target_error", "mean_ess_fraction", "coverage", "stage_seconds"):
        assert key in saved, key
    assert 0 <= saved["ref_accuracy"] <= 1 and 0 < saved["mean_ess_fraction"] <= 1
    assert json.loads((round_dir / "config.json").read_text())["weighting"]["beta"] == 0.5
    assert (round_dir / "success_rates.png").stat().st_size > 10_000
    assert (round_dir / "policy" / "model.safetensors").exists()

    runs = mlflow.MlflowClient(summary["tracking_uri"]).search_runs(
        [mlflow.MlflowClient(summary["tracking_uri"]).get_experiment_by_name("bolt-tiny").experiment_id]
    )
    assert [r.info.run_id for r in runs] == [summary["mlflow_run_id"]]
    run = runs[0]
    assert run.data.params["weighting.beta"] == "0.5"
    assert run.data.metrics["policy_accuracy"] == pytest.approx(saved["policy_accuracy"])
    history = mlflow.MlflowClient(summary["tracking_uri"]).get_metric_history(run.info.run_id, "train.loss")
    assert len(history) == len(pq.read_table(round_dir / "train_log.parquet"))

    mtime = (round_dir / "rollouts.parquet").stat().st_mtime_ns
    again = bolt_round(config=config, runs_dir=str(tmp_path))
    assert again == summary  # every stage came from the cache: same tables, same MLflow run
    assert (round_dir / "rollouts.parquet").stat().st_mtime_ns == mtime

    changed = validate_round_config(TINY | {"weighting": {"beta": 1.0}})
    other = bolt_round(config=changed, runs_dir=str(tmp_path))
    assert other["mlflow_run_id"] != summary["mlflow_run_id"]
    assert (round_dir / "rollouts.parquet").stat().st_mtime_ns == mtime  # sampling reused


@pytest.mark.slow
def test_malformed_prompt_file_stops_the_round_before_any_output(tmp_path, capsys):
    from bolt_tasks.cli import main

    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer" "4"}\n')
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text('{"prompt": "3+3=", "answer": "6"}\n')
    runs = tmp_path / "runs"
    code = main(["run", "--runs-dir", str(runs), "--pipeline", "bad",
                 "--prompts", str(train), "--heldout", str(heldout)])
    assert code == 2
    out = capsys.readouterr().out
    assert "train.jsonl line 2" in out and "malformed JSON" in out
    assert not list(runs.rglob("*.parquet"))
    assert not (runs / "reference").exists()
