"""The Python API (`import bolt`): what it exports, the stage functions without Prefect, and
run_round / run_refresh against the flows they run."""

import inspect
import os

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import bolt
from tiny_round import TINY_ROUND as TINY


def test_every_export_exists_and_is_documented():
    for name in bolt.__all__:
        exported = getattr(bolt, name)
        assert inspect.getdoc(exported), f"bolt.{name} has no docstring"
    functions = [n for n in bolt.__all__ if inspect.isfunction(getattr(bolt, n))]
    assert {"run_round", "run_refresh", "load_recipe", "sample_rollouts", "score_rollouts",
            "compute_weights", "write_weights", "train_policy", "evaluate_policy",
            "write_prompts"} <= set(functions)


def test_round_config_accepts_a_model_a_mapping_and_a_recipe(tmp_path):
    given = bolt.RoundConfig(pipeline="api")
    assert bolt.round_config(given) is given
    assert bolt.round_config({"pipeline": "api"}) == given
    assert bolt.round_config(None) == bolt.RoundConfig()
    assert bolt.round_config("smollm2").reference.model == "smollm2-135m-instruct"
    with pytest.raises(bolt.BoltInputError, match="field 'weighting.beta'"):
        bolt.round_config({"weighting": {"beta": -1}})
    with pytest.raises(ValueError, match="refresh recipe"):
        bolt.round_config("refresh-nightly")
    refresh = bolt.refresh_config(given)
    assert refresh.round.pipeline == "api-refresh" and refresh.add_rounds == 1
    assert bolt.refresh_config("refresh-nightly").round.pipeline == "nightly-refresh"


def test_a_bad_prompt_file_stops_run_round_before_any_server(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": 3, "answer": "4"}\n')
    config = {"task": {"prompts_file": str(bad), "heldout_file": str(bad)}}
    with pytest.raises(bolt.BoltInputError, match=r"train.jsonl line 2: field 'prompt'"):
        bolt.run_round(config, runs_dir=tmp_path / "runs")
    assert "PREFECT_API_URL" not in os.environ  # no server was started
    assert not (tmp_path / "runs").exists()


def test_the_stage_functions_make_a_round_without_prefect(tmp_path, tiny_model_dir):
    """prompts -> rollouts -> rewards -> weights -> policy -> evaluation, each a plain function
    over tables and files, with no Prefect API to talk to (the unit tier's PREFECT_API_URL is a
    closed port: tests/conftest.py)."""
    task = bolt.TaskConfig(train_prompts=6, heldout_prompts=4)
    sampling = bolt.SamplingConfig(samples_per_prompt=4)
    prompts = bolt.write_prompts(task, tmp_path / "prompts.parquet").read()
    rollouts = bolt.sample_rollouts(prompts, tiny_model_dir, tiny_model_dir, sampling, task, 0,
                                    tmp_path / "rollouts.parquet").read()
    assert rollouts.num_rows == 6 * 4
    rewards = bolt.score_rollouts(prompts, rollouts, task, tmp_path / "rewards.parquet").read()
    # rho = 1: every prompt trained on, so the weights and the step count below are the full table's
    weights, stats = bolt.compute_weights(
        rollouts, rewards, bolt.WeightingConfig(beta=0.5, zero_information_keep=1.0))
    # prompt-normalised: each prompt's weights average 1
    for prompt_id in set(weights["prompt_id"].to_pylist()):
        mine = weights.filter(pc.equal(weights["prompt_id"], prompt_id))["weight"].to_pylist()
        assert sum(mine) / len(mine) == pytest.approx(1.0, abs=1e-12)
    assert stats.num_rows == 6
    log = bolt.train_policy(rollouts, weights, tiny_model_dir,
                            bolt.TrainingConfig(epochs=1, batch_size=8, warmup_steps=0),
                            tmp_path / "policy", tmp_path / "train_log.parquet")
    assert log.read().num_rows == 3  # 24 rollouts, 8 a step, one epoch
    evaluation, samples = bolt.evaluate_policy(
        prompts, str(tmp_path / "policy"), tiny_model_dir,
        bolt.EvaluationConfig(samples_per_prompt=8), task,
        tmp_path / "eval.parquet", tmp_path / "samples.parquet")
    assert pq.read_table(evaluation.path).num_rows == 4
    assert pq.read_table(samples.path).num_rows == 4 * 8


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_run_round_returns_the_flows_summary_and_caches(tmp_path):
    config = bolt.RoundConfig.model_validate(TINY | {"pipeline": "api"})
    summary = bolt.run_round(config, runs_dir=tmp_path)
    assert summary.pipeline == "api" and summary.round == 0
    assert 0 <= summary.ref_accuracy <= 1 and 0 <= summary.policy_accuracy <= 1
    assert summary.accuracy_gain == pytest.approx(summary.policy_accuracy - summary.ref_accuracy)
    assert summary.mlflow_run_id
    assert (tmp_path / "api" / "round-0" / "weights.parquet").exists()
    again = bolt.run_round(TINY | {"pipeline": "api"}, runs_dir=tmp_path)  # a mapping, cached
    assert again.model_dump(exclude={"mlflow_run_id"}) == summary.model_dump(exclude={"mlflow_run_id"})

    refreshed = bolt.run_refresh({"round": TINY | {"pipeline": "api"}, "add_rounds": 2},
                                 runs_dir=tmp_path)
    assert [r.round for r in refreshed.rounds] == [0, 1]
    assert refreshed.rounds[1].sampler == refreshed.rounds[0].policy
