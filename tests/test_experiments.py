"""The experiment flows end to end on tiny configurations: tables, plots, report, MLflow run."""

from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

from bolt_tasks.analyses.experiment_config import (
    FrontierExperimentConfig,
    SaturationConfig,
    TargetMatchConfig,
)
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import validate_round_config

TINY_ROUND = {
    "task": {"train_prompts": 16, "heldout_prompts": 16},
    "reference": {"steps": 60, "batch_size": 32},
    "sampling": {"samples_per_prompt": 4},
    "training": {"epochs": 1, "batch_size": 16},
    "evaluation": {"samples_per_prompt": 8},
    "weighting": {"train_without_information": True},  # a tiny policy is often never right
}


def tiny_round(pipeline, **changes):
    return validate_round_config(TINY_ROUND | {"pipeline": pipeline} | changes)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("experiment-runs"))


def artifacts_of(runs_dir, run_id):
    return {a.path for a in mlflow.MlflowClient(RunsDirectory.at(runs_dir).tracking_uri()).list_artifacts(run_id)}


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_e1_fits_every_requested_scheme(runs_dir):
    from flows.experiments import experiment_target_match

    config = TargetMatchConfig(round=tiny_round("e1t", training={"epochs": 2, "batch_size": 16}),
                               betas=[0.5, 1.0], schemes=["bolt", "rft", "sft"], heldout_samples=8)
    result = experiment_target_match(config=config, runs_dir=runs_dir)
    summary = pq.read_table(Path(result.report).parent / "e1_summary.parquet").to_pylist()
    # bolt is fitted per beta, rft and sft once; each fit is measured against both betas.
    assert len(summary) == 4 * 2 * 2
    assert {(r["scheme"], r["fit_beta"]) for r in summary} == {
        ("bolt", 0.5), ("bolt", 1.0), ("rft", None), ("sft", None)}
    assert {r["split"] for r in summary} == {"train", "heldout"}
    assert all(r["prompts"] == 16 for r in summary)
    report = Path(result.report).read_text()
    assert "bolt, beta=0.5: median shift vs stored samples" in report
    assert {"e1_log_odds_shift.png", "e1_target_error.png", "report.md",
            "e1_summary.parquet"} <= artifacts_of(runs_dir, result.mlflow_run_id)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_e2_runs_each_grid_point_once(runs_dir):
    from flows.experiments import experiment_saturation

    config = SaturationConfig(round=tiny_round("e2t"), epochs=[1, 2], samples_per_prompt=[2, 4],
                              fixed_samples_per_prompt=2, fixed_epochs=1)
    result = experiment_saturation(config=config, runs_dir=runs_dir)
    points = result.rows
    assert sorted((p["samples_per_prompt"], p["epochs"]) for p in points) == [(2, 1), (2, 2), (4, 1)]
    for p in points:
        assert 0 <= p["policy_accuracy"] <= 1 and p["mean_support_price"] == p["mean_support_price"]
    assert (Path(runs_dir) / "e2t-n4-epochs1" / "round-0" / "rollouts.parquet").exists()
    assert "e2_saturation.png" in artifacts_of(runs_dir, result.mlflow_run_id)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_e5_puts_fitted_policies_on_the_frontier(runs_dir):
    from flows.experiments import experiment_frontier

    config = FrontierExperimentConfig(round=tiny_round("e5t"), betas=[0.5, 2.0], trained_betas=[0.5, 1.0])
    result = experiment_frontier(config=config, runs_dir=runs_dir)
    assert [r["beta"] for r in result.rows] == [0.5, 2.0]
    trained = pq.read_table(Path(result.report).parent / "trained_points.parquet").to_pylist()
    assert [t["beta"] for t in trained] == [0.5, 1.0]
    assert {"frontier.png", "frontier.parquet"} <= artifacts_of(runs_dir, result.mlflow_run_id)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_e3_compares_refresh_with_one_shot_at_equal_budget(runs_dir):
    from bolt_tasks.analyses.experiment_config import RefreshExperimentConfig
    from flows.experiments import experiment_refresh

    config = RefreshExperimentConfig(round=tiny_round("e3t"), rounds=2, total_samples_per_prompt=4)
    result = experiment_refresh(config=config, runs_dir=runs_dir)
    rows = result.rows
    assert [(r["arm"], r["round"], r["train_samples_per_prompt"]) for r in rows] == [
        ("one-shot", 0, 4), ("refresh", 0, 2), ("refresh", 1, 2)]
    assert rows[-1]["cumulative_samples_per_prompt"] == rows[0]["cumulative_samples_per_prompt"]
    assert "e3_refresh_vs_one_shot.png" in artifacts_of(runs_dir, result.mlflow_run_id)
