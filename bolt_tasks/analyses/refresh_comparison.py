"""E3: does refreshing the sampler beat one shot at the same sampling budget?

Claim under test (paper): when pi_ref covers the target poorly, refreshed Boltzmann projections
(KL mirror descent, alpha = 1 re-targeting pi* from pi_k's samples) gain over a single
projection. Both arms draw the same total number of samples per prompt and target the same pi*.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402
from prefect import task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from bolt_tasks.analyses.reporting import markdown_table, publish  # noqa: E402
from bolt_tasks.core.catalogue import RunsDirectory  # noqa: E402
from bolt_tasks.core.results import AnalysisResult, RoundSummary  # noqa: E402
from bolt_tasks.core.storage import save_figure_atomic  # noqa: E402

COLUMNS = ("arm", "round", "train_samples_per_prompt", "cumulative_samples_per_prompt", "coverage",
           "mean_ess_fraction", "policy_accuracy", "target_accuracy", "target_error",
           "projection_gap", "kl", "ref_accuracy", "accuracy_gain_se")


def comparison_table(one_shot: RoundSummary, refreshed: list[RoundSummary]) -> pa.Table:
    n = one_shot.rollouts // one_shot.train_prompts
    rows = [one_shot.model_dump() | {"arm": "one-shot", "round": 0, "train_samples_per_prompt": n,
                                     "cumulative_samples_per_prompt": n}]
    total = 0
    for summary in refreshed:
        n = summary.rollouts // summary.train_prompts
        total += n
        rows.append(summary.model_dump() | {"arm": "refresh", "train_samples_per_prompt": n,
                                            "cumulative_samples_per_prompt": total})
    return pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows])


def comparison_plot(table: pa.Table, out_path: Path) -> Path:
    rows = table.to_pylist()
    one_shot = rows[0]
    refresh = rows[1:]
    x = [r["cumulative_samples_per_prompt"] for r in refresh]
    figure, (accuracy, gap) = plt.subplots(1, 2, figsize=(11, 4))
    accuracy.plot(x, [r["policy_accuracy"] for r in refresh], "o-", label="refreshed rounds")
    accuracy.plot([one_shot["cumulative_samples_per_prompt"]], [one_shot["policy_accuracy"]], "D",
                  markersize=9, color="tab:red", label="one shot")
    accuracy.axhline(one_shot["target_accuracy"], color="k", linestyle="--", label="target p*")
    accuracy.axhline(one_shot["ref_accuracy"], color="grey", linestyle=":", label="pi_ref")
    accuracy.set_ylabel("held-out accuracy (temperature 1)")
    gap.plot(x, [r["projection_gap"] for r in refresh], "o-", label="refresh: KL(pi* || pi)")
    gap.plot([one_shot["cumulative_samples_per_prompt"]], [one_shot["projection_gap"]], "D",
             markersize=9, color="tab:red", label="one shot: KL(pi* || pi)")
    gap.plot(x, [r["target_error"] for r in refresh], "s--", label="refresh: mean |p - p*|")
    gap.plot([one_shot["cumulative_samples_per_prompt"]], [one_shot["target_error"]], "s",
             markersize=9, color="tab:purple", label="one shot: mean |p - p*|")
    for axes in (accuracy, gap):
        axes.set_xlabel("samples drawn per training prompt so far")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("E3: refreshed sampler vs one shot, same sampling budget", fontsize=10)
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=110)
    plt.close(figure)
    return out_path


@task(name="report-e3", cache_policy=NO_CACHE)
def report_refresh_comparison_task(
    config_dump: dict, one_shot: RoundSummary, refreshed: list[RoundSummary], out_dir: str,
    runs: RunsDirectory,
) -> AnalysisResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(one_shot, refreshed)
    plot = comparison_plot(table, out / "e3_refresh_vs_one_shot.png")
    last = refreshed[-1]
    difference = last.policy_accuracy - one_shot.policy_accuracy
    errors = (last.accuracy_gain_se, one_shot.accuracy_gain_se)  # None with one held-out prompt
    standard_error = ("n/a" if None in errors
                      else f"{100 * (errors[0] ** 2 + errors[1] ** 2) ** 0.5:.1f}")
    finding = (
        f"After {len(refreshed)} refreshed rounds the held-out accuracy is {last.policy_accuracy:.3f} "
        f"against {one_shot.policy_accuracy:.3f} for one shot with the same "
        f"{table['cumulative_samples_per_prompt'][0].as_py()} samples per prompt "
        f"({100 * difference:+.1f} points, rough SE {standard_error}); target error "
        f"{last.target_error:.3f} vs {one_shot.target_error:.3f}; KL(pi*||pi) "
        f"{last.projection_gap:.3f} vs {one_shot.projection_gap:.3f}."
    )
    report = "\n\n".join([
        "# E3: refreshed sampler vs one shot", finding, markdown_table(table),
        "## Configuration", f"```json\n{json.dumps(config_dump, indent=2)}\n```",
    ])
    run_id = publish("E3 refresh vs one-shot", out, runs, {"e3_rounds": table}, [plot], report,
                     {"config": config_dump})
    return AnalysisResult(report=str(out / "report.md"), plots=[str(plot)], mlflow_run_id=run_id,
                          rows=table.to_pylist())
