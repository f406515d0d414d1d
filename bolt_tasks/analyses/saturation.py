"""E2, one-shot saturation: more epochs on the same rollouts against more samples per prompt.

Claim under test (paper): the one-shot gap has a part, the stored-support price
beta*log(1/pi*(S_N|x)), that extra SFT epochs cannot repair; more samples N shrink it.
Each point is a whole bolt-round; its summary supplies every number here.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402

from bolt_tasks.analyses.reporting import markdown_table, publish  # noqa: E402
from bolt_tasks.core.caching import stage  # noqa: E402
from bolt_tasks.core.catalogue import RunsDirectory  # noqa: E402
from bolt_tasks.core.results import AnalysisResult, RoundSummary  # noqa: E402
from bolt_tasks.core.storage import save_figure_atomic  # noqa: E402

SUMMARY_COLUMNS = ("policy_accuracy", "target_accuracy", "target_error",
           "target_error_noise_floor", "projection_gap", "mean_support_price", "coverage",
           "mean_ess_fraction", "ref_accuracy", "accuracy_gain_se")


def saturation_table(points: list[tuple[int, int, RoundSummary]]) -> pa.Table:
    """One row per (training samples per prompt N, epochs, the round's summary)."""
    return pa.Table.from_pylist([
        {"samples_per_prompt": n, "epochs": epochs}
        | {column: getattr(summary, column) for column in SUMMARY_COLUMNS}
        for n, epochs, summary in points
    ])


def saturation_plot(table: pa.Table, fixed_n: int, fixed_epochs: int, out_path: Path) -> Path:
    rows = table.to_pylist()
    figure, panels = plt.subplots(1, 2, figsize=(12, 4.3))
    for panel, key, fixed_key, fixed, label in (
        (panels[0], "epochs", "samples_per_prompt", fixed_n, f"epochs (N = {fixed_n})"),
        (panels[1], "samples_per_prompt", "epochs", fixed_epochs, f"N samples per prompt ({fixed_epochs} epochs)"),
    ):
        points = sorted((r for r in rows if r[fixed_key] == fixed), key=lambda r: r[key])
        x = [r[key] for r in points]
        panel.plot(x, [r["policy_accuracy"] for r in points], "o-", label="held-out accuracy")
        panel.plot(x, [r["target_accuracy"] for r in points], "k--", label="target accuracy p*")
        panel.plot(x, [r["target_error"] for r in points], "s-", label="mean |p_theta - p*|")
        panel.plot(x, [r["projection_gap"] for r in points], "^-", label="KL(pi* || pi_theta)")
        panel.plot(x, [r["mean_support_price"] for r in points], "d:",
                   label="stored-support price (training prompts)")
        for r in points:
            panel.annotate(f"{r['mean_support_price']:.2f}", (r[key], r["mean_support_price"]),
                           textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center")
        panel.set_xscale("log", base=2)
        panel.set_xticks(x, [str(v) for v in x])
        panel.set_xlabel(label)
        panel.grid(alpha=0.3)
    panels[0].set_title("more epochs on the same rollouts")
    panels[1].set_title("more samples per prompt")
    panels[1].legend(fontsize=8)
    figure.suptitle("E2: one-shot saturation (beta = 0.5)", fontsize=10)
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=110)
    plt.close(figure)
    return out_path


def report_saturation(
    config_dump: dict, points: list[tuple[int, int, RoundSummary]], fixed_n: int, fixed_epochs: int,
    out_dir: str, runs: RunsDirectory,
) -> AnalysisResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = saturation_table(points)
    plot = saturation_plot(table, fixed_n, fixed_epochs, out / "e2_saturation.png")
    by_epochs = sorted((r for r in table.to_pylist() if r["samples_per_prompt"] == fixed_n),
                       key=lambda r: r["epochs"])
    by_n = sorted((r for r in table.to_pylist() if r["epochs"] == fixed_epochs),
                  key=lambda r: r["samples_per_prompt"])
    findings = [
        f"- Epochs {by_epochs[0]['epochs']} -> {by_epochs[-1]['epochs']} at N = {fixed_n}: "
        f"held-out accuracy {by_epochs[0]['policy_accuracy']:.3f} -> {by_epochs[-1]['policy_accuracy']:.3f}, "
        f"target error {by_epochs[0]['target_error']:.3f} -> {by_epochs[-1]['target_error']:.3f}, "
        f"KL(pi*||pi_theta) {by_epochs[0]['projection_gap']:.3f} -> {by_epochs[-1]['projection_gap']:.3f}; "
        f"stored-support price fixed at {by_epochs[0]['mean_support_price']:.3f} (same rollouts).",
        f"- N {by_n[0]['samples_per_prompt']} -> {by_n[-1]['samples_per_prompt']} at {fixed_epochs} epochs: "
        f"held-out accuracy {by_n[0]['policy_accuracy']:.3f} -> {by_n[-1]['policy_accuracy']:.3f}, "
        f"target error {by_n[0]['target_error']:.3f} -> {by_n[-1]['target_error']:.3f}, "
        f"KL(pi*||pi_theta) {by_n[0]['projection_gap']:.3f} -> {by_n[-1]['projection_gap']:.3f}, "
        f"stored-support price {by_n[0]['mean_support_price']:.3f} -> {by_n[-1]['mean_support_price']:.3f}.",
    ]
    report = "\n\n".join([
        "# E2: one-shot saturation",
        "Each point is a full bolt-round (sample, weight, fit, evaluate on 512 held-out prompts "
        "x 64 samples). The stored-support price is the mean over training prompts of "
        "beta*log(1/pi*(S_N|x)).",
        "## Findings", "\n".join(findings),
        "## All points", markdown_table(table),
        "## Configuration", f"```json\n{json.dumps(config_dump, indent=2)}\n```",
    ])
    run_id = publish("E2 one-shot saturation", out, runs, {"e2_points": table}, [plot], report,
                     {"config": config_dump})
    return AnalysisResult(report=str(out / "report.md"), plots=[str(plot)], mlflow_run_id=run_id,
                          rows=table.to_pylist())


@stage("report-e2")
def report_saturation_task(
    config_dump: dict, points: list[tuple[int, int, RoundSummary]], fixed_n: int, fixed_epochs: int,
    out_dir: str, runs: RunsDirectory,
) -> AnalysisResult:
    return report_saturation(config_dump, points, fixed_n, fixed_epochs, out_dir, runs)
