"""End to end: the bolt-round flow on a tiny configuration, its caching, MLflow run and errors."""

import json

import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.config import validate_round_config
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.tables import ROUND_TABLES

TINY = {
    "pipeline": "tiny",
    "task": {"train_prompts": 48, "heldout_prompts": 32},
    "reference": {"steps": 120, "batch_size": 64},
    "sampling": {"samples_per_prompt": 4},
    "training": {"epochs": 1, "batch_size": 32},
    "evaluation": {"samples_per_prompt": 8},
    "weighting": {"train_without_information": True},  # a tiny policy is often never right
}


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_round_runs_caches_and_tracks(tmp_path, capsys, monkeypatch):
    import mlflow

    from flows.round import bolt_round

    config = validate_round_config(TINY)
    summary = bolt_round(config=config, runs_dir=str(tmp_path))
    round_dir = tmp_path / "tiny" / "round-0"
    for spec in ROUND_TABLES:
        assert (round_dir / spec.file_name).exists(), spec.name
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

    runs = mlflow.MlflowClient(summary.tracking_uri).search_runs(
        [mlflow.MlflowClient(summary.tracking_uri).get_experiment_by_name("bolt-tiny").experiment_id]
    )
    assert [r.info.run_id for r in runs] == [summary.mlflow_run_id]
    # no stray "Default" experiment with artifacts under the working directory
    experiments = mlflow.MlflowClient(summary.tracking_uri).search_experiments()
    assert [e.name for e in experiments] == ["bolt-tiny"]
    assert experiments[0].artifact_location.startswith(tmp_path.as_uri())
    run = runs[0]
    assert run.data.params["weighting.beta"] == "0.5"
    # open while the round ran: from before the first rollout was written to after the summary
    assert run.info.status == "FINISHED"
    assert run.info.start_time / 1000 < (round_dir / "rollouts.parquet").stat().st_mtime
    assert run.info.end_time / 1000 > (round_dir / "summary.json").stat().st_mtime
    assert run.data.metrics["policy_accuracy"] == pytest.approx(saved["policy_accuracy"])
    # small tables also as MLflow JSON tables the UI shows; every table as Parquet
    tables = {a.path for a in mlflow.MlflowClient(summary.tracking_uri).list_artifacts(run.info.run_id, "tables")}
    assert {"tables/eval.json", "tables/prompt_stats.json", "tables/weights.json", "tables/eval.parquet"} <= tables
    assert {"weights.png", "loss.png", "success_rates.png"} <= {
        a.path for a in mlflow.MlflowClient(summary.tracking_uri).list_artifacts(run.info.run_id)}
    history = mlflow.MlflowClient(summary.tracking_uri).get_metric_history(run.info.run_id, "train.loss")
    assert len(history) == len(pq.read_table(round_dir / "train_log.parquet"))
    # What the UI shows: a model-training experiment, the round first in the run's name, counts as
    # params and stage times as tags (not single-bar charts), the summary as a table, the policy
    # as the run's logged model, its registered version tagged with pipeline and round.
    client = mlflow.MlflowClient(summary.tracking_uri)
    assert experiments[0].tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.run_name == "round 0 · tiny"
    assert run.data.params["count.rollouts"] == str(48 * 4) and "rollouts" not in run.data.metrics
    assert "stage_seconds.training" not in run.data.metrics
    assert run.data.tags["bolt.stage_seconds.training"].endswith(" s")
    assert {"tables/summary.json", "tables/eval.json"} <= tables
    [logged] = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert logged.name == "policy" and logged.source_run_id == run.info.run_id
    version = client.get_model_version_by_alias("bolt-tiny", "newest")
    assert logged.model_id in version.source and version.run_id == run.info.run_id
    assert version.tags == {"bolt.pipeline": "tiny", "bolt.round": "0"}
    assert summary.mlflow_run_page == (f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/"
                                       f"{run.info.run_id}?workflowType=machine_learning")

    from bolt_cli.main import main

    assert main(["sql", "SELECT count(*) AS n FROM rollouts", "--runs-dir", str(tmp_path)]) == 0
    assert str(48 * 4) in capsys.readouterr().out
    mtime = (round_dir / "rollouts.parquet").stat().st_mtime_ns
    again = bolt_round(config=config, runs_dir=str(tmp_path))
    assert again == summary  # every stage came from the cache: same tables, same MLflow run
    assert (round_dir / "rollouts.parquet").stat().st_mtime_ns == mtime

    # A round directory belongs to one configuration: another one is refused, naming the change,
    # before it can overwrite a table that a cached stage of the first one points to.
    changed = validate_round_config(TINY | {"weighting": {"beta": 1.0}})
    with pytest.raises(BoltInputError, match=r"weighting.beta: 0.5 -> 1.0"):
        bolt_round(config=changed, runs_dir=str(tmp_path))
    assert (round_dir / "rollouts.parquet").stat().st_mtime_ns == mtime
    other = bolt_round(config=changed.model_copy(update={"pipeline": "tiny-beta1"}), runs_dir=str(tmp_path))
    assert other.mlflow_run_id != summary.mlflow_run_id
    assert other.beta == 1.0 and other.round_dir.endswith("tiny-beta1/round-0")

    # The registered policy is an MLflow model that generates, through pyfunc and its flavor.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", summary.tracking_uri)
    generator = mlflow.pyfunc.load_model("models:/bolt-tiny@newest")
    assert generator.metadata.flavors["transformers"]["task"] == "text-generation"
    [text] = generator.predict(["12+34="])
    assert text.startswith("12+34=") and len(text) > len("12+34=")
    pipeline = mlflow.transformers.load_model("models:/bolt-tiny@newest")
    assert pipeline("12+34=", do_sample=False)[0]["generated_text"].startswith("12+34=")


def test_malformed_prompt_file_stops_the_round_before_any_output(tmp_path, capsys):
    from bolt_cli.main import main

    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer" "4"}\n')
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text('{"prompt": "3+3=", "answer": "6"}\n')
    runs = tmp_path / "runs"
    code = main(["run", "--runs-dir", str(runs), "--pipeline", "bad",
                 "--prompts", str(train), "--heldout", str(heldout)])
    assert code == 2
    out = capsys.readouterr().err
    assert "train.jsonl line 2" in out and "malformed JSON" in out
    assert not list(runs.rglob("*.parquet"))
    assert not (runs / "reference").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_round_on_user_prompt_files_and_a_user_model_directory(tmp_path):
    """The same flow on a user's JSONL prompts, verifier and model directory."""
    from bolt_cli.main import main
    from flows.round import bolt_round

    main(["bootstrap", "--runs-dir", str(tmp_path), "--set", "reference.steps=60",
          "--set", "reference.batch_size=32"])
    [model_dir] = (tmp_path / "reference").glob("embedded-*")
    train, heldout = tmp_path / "train.jsonl", tmp_path / "heldout.jsonl"
    train.write_text("".join(
        json.dumps({"prompt": f"{a:02d}+{b:02d}=", "answer": f"{a + b:03d}", "id": f"t{a}-{b}"}) + "\n"
        for a in range(3) for b in range(4)))
    heldout.write_text("".join(
        json.dumps({"prompt": f"{a}{a}+{a}1=", "answer": f"{11 * a + 10 * a + 1:03d}"}) + "\n"
        for a in range(3, 7)))
    config = validate_round_config({
        "pipeline": "user",
        "task": {"prompts_file": str(train), "heldout_file": str(heldout), "verifier": "exact_match"},
        "reference": {"model": str(model_dir)},
        "sampling": {"samples_per_prompt": 3},
        "evaluation": {"samples_per_prompt": 8},
        "weighting": {"train_without_information": True},
    })
    summary = bolt_round(config=config, runs_dir=str(tmp_path / "runs"))
    round_dir = tmp_path / "runs" / "user" / "round-0"
    rewards = pq.read_table(round_dir / "rewards.parquet")
    assert rewards.num_rows == 12 * 3
    assert set(rewards["verifier"].to_pylist()) == {"exact_match"}
    assert set(pq.read_table(round_dir / "rollouts.parquet")["sampler_model"].to_pylist()) == {
        str(model_dir.resolve())}
    assert summary.heldout_prompts == 4
    assert summary.reference == str(model_dir.resolve())
