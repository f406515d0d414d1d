"""The temperature-coverage-variance frontier, from stored rollouts alone (no training).

For each beta: mean ESS/N and the share of prompts with ESS/N < 0.1 (variance), coverage,
the mean target success p* the weights imply, and the mean stored-support price
beta*log(1/pi*(S_N|x)) (the part of the one-shot gap more epochs cannot remove). Every
number comes from sql/ (weights, prompt_stats, weights_summary) at that beta.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402
from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from bolt_tasks.analyses.reporting import markdown_table, publish  # noqa: E402
from bolt_tasks.core.catalogue import RunsDirectory  # noqa: E402
from bolt_tasks.core.config import WeightingConfig  # noqa: E402
from bolt_tasks.core.errors import BoltInputError  # noqa: E402
from bolt_tasks.core.results import AnalysisResult, RoundSummary  # noqa: E402
from bolt_tasks.core.storage import save_figure_atomic  # noqa: E402
from bolt_tasks.stages.weights import compute_weights, summarize_prompt_stats  # noqa: E402

DEFAULT_BETAS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0)


def frontier_table(
    rollouts: pa.Table | str, rewards: pa.Table | str, betas, success_threshold: float | None = None
) -> pa.Table:
    rows = []
    for beta in betas:
        _, stats = compute_weights(
            rollouts, rewards, WeightingConfig(beta=beta, success_threshold=success_threshold)
        )
        rows.append({"beta": float(beta)} | summarize_prompt_stats(stats))
    return pa.Table.from_pylist(rows)


def frontier_plot(frontier: pa.Table, out_path: str | Path, trained: pa.Table | None = None,
                  title: str = "") -> Path:
    """Three panels against beta; `trained` (beta, policy_accuracy, target_accuracy,
    ref_accuracy) adds held-out points of policies actually fitted at those betas."""
    beta = frontier["beta"].to_numpy()
    figure, (variance, target, price) = plt.subplots(1, 3, figsize=(14, 4))
    variance.plot(beta, frontier["mean_ess_fraction"].to_numpy(), "o-", label="mean ESS/N")
    variance.plot(beta, frontier["share_ess_fraction_below_0_1"].to_numpy(), "s--",
                  label="share of prompts with ESS/N < 0.1")
    variance.set_title("variance")
    target.plot(beta, frontier["coverage"].to_numpy(), "o-", label="coverage (a success stored)")
    target.plot(beta, frontier["mean_target_success"].to_numpy(), "s--",
                label="target success p* (training prompts, from weights)")
    if trained is not None:
        target.plot(trained["beta"].to_numpy(), trained["policy_accuracy"].to_numpy(), "D",
                    color="tab:red", markersize=8, label="fitted policy, held-out accuracy")
        target.plot(trained["beta"].to_numpy(), trained["target_accuracy"].to_numpy(), "x",
                    color="tab:red", markersize=8, label="its exact target p*, held-out")
        target.axhline(trained["ref_accuracy"].to_numpy()[0], color="grey", linestyle=":",
                       label="pi_ref held-out accuracy")
    target.set_title("temperature: what the tilt asks for")
    price.plot(beta, frontier["mean_support_price"].to_numpy(), "o-")
    price.set_title("stored-support price beta*log(1/pi*(S_N|x))")
    for axes in (variance, target, price):
        axes.set_xscale("log")
        axes.set_xlabel("beta")
        axes.grid(alpha=0.3)
    variance.legend(fontsize=8)
    target.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=110)
    plt.close(figure)
    return Path(out_path)


def report_frontier(
    frontier: pa.Table, title: str, out_dir: str | Path, runs: RunsDirectory, params: dict,
    trained: pa.Table | None = None, experiment: str = "bolt-experiments",
) -> AnalysisResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot = frontier_plot(frontier, out / "frontier.png", trained, title)
    tables = {"frontier": frontier} | ({"trained_points": trained} if trained is not None else {})
    report = "\n\n".join(
        [f"# {title}", "Computed from the stored rollouts alone, for each beta "
         "(sql/weights.sql, sql/prompt_stats.sql, sql/weights_summary.sql).",
         markdown_table(frontier)]
        + (["## Fitted policies (held-out)", markdown_table(trained)] if trained is not None else [])
    )
    run_id = publish(title, out, runs, tables, [plot], report, params, experiment)
    return AnalysisResult(report=str(out / "report.md"), plots=[str(plot)], mlflow_run_id=run_id,
                          rows=frontier.to_pylist())


@task(name="frontier", cache_policy=NO_CACHE)
def frontier_task(pipeline: str, round_index: int, runs: RunsDirectory, betas: list[float]) -> AnalysisResult:
    """Not cached: it takes well under a second per beta, and its inputs are whatever the
    round directory holds now."""
    round_dir = runs.round(pipeline, round_index)
    for name in ("rollouts", "rewards"):
        if not Path(round_dir.table(name)).exists():
            raise BoltInputError(f"{round_dir.table(name)}: not found; run `bolt run --pipeline {pipeline}` first")
    table = frontier_table(round_dir.table("rollouts"), round_dir.table("rewards"), betas)
    return report_frontier(
        table, f"frontier of {pipeline}/round-{round_index}", round_dir.frontier,
        runs, {"pipeline": pipeline, "round": round_index, "betas": betas},
        experiment=f"bolt-{pipeline}",
    )


@task(name="report-e5", cache_policy=NO_CACHE)
def report_frontier_experiment_task(
    rollouts: str, rewards: str, betas: list[float], trained_points: list[RoundSummary], out_dir: str,
    runs: RunsDirectory, config_dump: dict,
) -> AnalysisResult:
    trained = pa.Table.from_pylist([
        p.model_dump(include={"beta", "policy_accuracy", "target_accuracy", "ref_accuracy",
                              "target_error", "kl", "projection_gap", "mean_ess_fraction",
                              "mean_support_price"})
        for p in trained_points
    ])
    return report_frontier(
        frontier_table(rollouts, rewards, betas), "E5: temperature-coverage-variance frontier",
        out_dir, runs, {"config": config_dump}, trained,
    )
