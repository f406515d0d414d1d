"""E1, the target-matched weight: the same rollouts fitted with every scheme over a beta grid.

Claim under test (paper): with reference sampling, exp(r/beta)/Z(x) is the weight whose
weighted-SFT fit is pi*. For 0/1 rewards pi* shifts each prompt's log-odds of success by
exactly 1/beta. Measured per prompt with exact success probabilities (one forward pass), on
training prompts against the stored samples' success rate (the projection, isolated from
coverage) and against pi_ref's rate, and on held-out prompts (generalisation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from bolt_tasks.analyses.reporting import markdown_table, publish  # noqa: E402
from bolt_tasks.core.caching import stage  # noqa: E402
from bolt_tasks.core.catalogue import RunsDirectory  # noqa: E402
from bolt_tasks.core.duck import connect, sql_text, view  # noqa: E402
from bolt_tasks.core.results import AnalysisResult  # noqa: E402
from bolt_tasks.core.storage import TableRef, save_figure_atomic  # noqa: E402
from bolt_tasks.stages.comparison import projection_gap  # noqa: E402

BETA_INDEPENDENT = ("rft", "reward", "sft")


@dataclass(frozen=True)
class Fit:
    scheme: str
    beta: float | None  # None for schemes whose weights do not depend on beta
    answer_probs: TableRef
    train_logprobs: TableRef
    heldout_logprobs: TableRef
    train_log: TableRef


def fit_grid(schemes: list[str], betas: list[float]) -> list[tuple[str, float | None]]:
    return [(s, None) if s in BETA_INDEPENDENT else (s, b) for s in schemes
            for b in ([None] if s in BETA_INDEPENDENT else betas)]


def last_epoch_loss_change(train_log: pa.Table) -> float:
    """Relative change of the mean loss from the next-to-last to the last epoch: ~0 when the
    fit has converged."""
    epochs = train_log["epoch"].to_numpy()
    loss = train_log["loss"].to_numpy()
    last = epochs.max()
    if last == 0:
        return float("nan")
    final, before = loss[epochs == last].mean(), loss[epochs == last - 1].mean()
    if final == before:  # a loss of 0 in both (a scheme that weights every rollout 0): no change
        return 0.0
    return float((final - before) / abs(before))


def measure_fit(
    prompts: pa.Table, rewards: pa.Table, rollouts: pa.Table, reference_samples: pa.Table,
    reference_probs: pa.Table, fit: Fit, target_beta: float, success_threshold: float,
) -> tuple[pa.Table, pa.Table]:
    """(per-prompt table, per-split summary) of one fit against one beta's target."""
    gaps = pa.concat_tables([
        projection_gap(rollouts, rewards, fit.train_logprobs.read(), target_beta),
        projection_gap(reference_samples, reference_samples, fit.heldout_logprobs.read(), target_beta),
    ])
    connection = connect()
    connection.execute(sql_text("target_macro"))
    view(connection, "prompts", prompts)
    view(connection, "reference_probs", reference_probs)
    view(connection, "policy_probs", fit.answer_probs.read())
    view(connection, "stored", rewards)
    connection.register("gaps", gaps)
    per_prompt = connection.sql(
        sql_text("target_match"), params={"beta": target_beta, "success_threshold": success_threshold}
    ).to_arrow_table()
    connection.register("per_prompt", per_prompt)
    summary = connection.sql(sql_text("target_match_summary")).to_arrow_table()
    labels = {"scheme": fit.scheme, "fit_beta": fit.beta, "target_beta": target_beta}
    return _label(per_prompt, labels), _label(summary, labels)


def _label(table: pa.Table, labels: dict) -> pa.Table:
    for position, (name, value) in enumerate(labels.items()):
        table = table.add_column(position, name, pa.array([value] * table.num_rows, pa.float64()
                                                          if name != "scheme" else pa.string()))
    return table


def shift_plot(summary: pa.Table, out_path: Path) -> Path:
    """Median log-odds shift of each fit against 1/beta of its own target; beta-free schemes
    (rft, reward, sft) against every beta. Shifts far above the 1/beta range are written in."""
    rows = [r for r in summary.to_pylist() if r["fit_beta"] in (None, r["target_beta"])]
    top = 1.6 * max(1 / r["target_beta"] for r in rows)
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for panel, split, column, title in (
        (panels[0], "train", "median_shift_vs_stored", "training prompts: vs stored samples"),
        (panels[1], "heldout", "median_shift_vs_ref", "held-out prompts: vs pi_ref"),
    ):
        split_rows = [r for r in rows if r["split"] == split]
        panel.plot([0, top], [0, top], color="grey", linestyle=":", label="1/beta (pi*)")
        for i, scheme in enumerate(dict.fromkeys(r["scheme"] for r in split_rows)):
            points = sorted((1 / r["target_beta"], r[column]) for r in split_rows
                            if r["scheme"] == scheme and r[column] is not None)
            if not points:  # no prompt where the shift is defined (e.g. none with 0 < p < 1)
                panel.annotate(f"{scheme}: not measurable", (0.02, 0.93 - 0.07 * i),
                               xycoords="axes fraction", fontsize=8, color=f"C{i}")
                continue
            x, y = zip(*points)
            if max(y) > top:
                panel.annotate(f"{scheme}: {np.median(y):.1f} (off scale)", (0.02, 0.93 - 0.07 * i),
                               xycoords="axes fraction", fontsize=8, color=f"C{i}")
                continue
            panel.plot(x, y, "o-", color=f"C{i}", label=scheme)
        panel.set_ylim(-0.3, top)
        panel.set_title(title)
        panel.set_xlabel("1/beta")
        panel.grid(alpha=0.3)
    panels[0].set_ylabel("median per-prompt shift in log-odds of success")
    panels[1].legend(fontsize=8, loc="lower right")
    figure.suptitle("E1: each scheme fitted to convergence on the same pi_ref rollouts", fontsize=10)
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=110)
    plt.close(figure)
    return out_path


def error_plot(summary: pa.Table, out_path: Path) -> Path:
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = [r for r in summary.to_pylist() if r["fit_beta"] in (None, r["target_beta"])]
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    betas = sorted({r["target_beta"] for r in rows})
    width = 0.8 / len(schemes)
    for panel, column, title in ((panels[0], "mean_target_error", "mean |p_theta - p*|"),
                                 (panels[1], "mean_projection_gap", "KL(pi* || pi_theta) estimate")):
        for i, scheme in enumerate(schemes):
            for j, split in enumerate(("train", "heldout")):
                values = [next(r[column] for r in rows if r["scheme"] == scheme and r["split"] == split
                               and r["target_beta"] == b) for b in betas]
                panel.bar(np.arange(len(betas)) + i * width + (j - 0.5) * width / 2, values,
                          width / 2, color=f"C{i}", alpha=1.0 if split == "train" else 0.45,
                          label=f"{scheme} ({'train' if split == 'train' else 'held-out'})")
        panel.set_xticks(np.arange(len(betas)) + width * (len(schemes) - 1) / 2,
                         [f"beta={b:g}" for b in betas])
        panel.set_title(title)
        panel.grid(alpha=0.3, axis="y")
    panels[1].legend(fontsize=7, ncol=2)
    figure.suptitle("E1: distance of each scheme's fit to the Boltzmann target (solid: training "
                    "prompts, light: held-out)", fontsize=10)
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=110)
    plt.close(figure)
    return out_path


def _shift(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def verdicts(summary: pa.Table, tolerance: float = 0.25) -> list[str]:
    """Each fit against its own beta's target (beta-free schemes against every beta)."""
    rows = summary.to_pylist()
    lines = []
    for r in rows:
        if r["split"] != "train" or r["fit_beta"] not in (None, r["target_beta"]):
            continue
        expected = 1 / r["target_beta"]
        held = next(h for h in rows if h["split"] == "heldout" and h["scheme"] == r["scheme"]
                    and h["fit_beta"] == r["fit_beta"] and h["target_beta"] == r["target_beta"])
        head = (f"- {r['scheme']}, beta={r['target_beta']:g}: median shift vs stored samples "
                f"{_shift(r['median_shift_vs_stored'])}, vs pi_ref {_shift(r['median_shift_vs_ref'])}, "
                f"held-out vs pi_ref {_shift(held['median_shift_vs_ref'])}; 1/beta = {expected:.3f} ")
        if r["median_shift_vs_stored"] is None:
            lines.append(head + "(not measurable: no training prompt's samples hold both a success "
                         "and a failure)")
            continue
        relative = (r["median_shift_vs_stored"] - expected) / expected
        lines.append(head + f"(relative error {100 * relative:+.1f}%: "
                     f"{'within' if abs(relative) <= tolerance else 'outside'} {100 * tolerance:.0f}%)")
    return lines


def report_target_match(
    config_dump: dict, prompts: TableRef, rollouts: TableRef, rewards: TableRef,
    reference_samples: TableRef, reference_probs: TableRef, fits: list[Fit], betas: list[float],
    success_threshold: float, out_dir: str, runs: RunsDirectory,
) -> AnalysisResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_prompt, summaries, convergence = [], [], []
    loaded = [t.read() for t in (prompts, rewards, rollouts, reference_samples, reference_probs)]
    for fit in fits:
        convergence.append({"scheme": fit.scheme, "fit_beta": fit.beta,
                            "last_epoch_loss_change": last_epoch_loss_change(fit.train_log.read())})
        for beta in betas:
            table, summary = measure_fit(*loaded, fit, beta, success_threshold)
            per_prompt.append(table)
            summaries.append(summary)
    summary = pa.concat_tables(summaries)
    plots = [shift_plot(summary, out / "e1_log_odds_shift.png"),
             error_plot(summary, out / "e1_target_error.png")]
    convergence_table = pa.Table.from_pylist(convergence)
    columns = ["scheme", "fit_beta", "target_beta", "split", "prompts_with_mixed_samples",
               "median_shift_vs_stored", "median_shift_vs_ref", "mean_p_theta", "mean_p_star",
               "mean_target_error", "mean_projection_gap"]
    report = "\n\n".join([
        "# E1: the target-matched weight",
        "The same pi_ref rollouts fitted with every weighting scheme; each fit measured against "
        "the Boltzmann target of each beta. Success probabilities are exact (pi(answer+EOS|x)). "
        "Shifts are in log-odds of success; pi* shifts every prompt by exactly 1/beta.",
        "## Does BOLT's fit shift log-odds by 1/beta? (training prompts, vs stored samples)",
        "\n".join(verdicts(summary)),
        "## All schemes", markdown_table(summary.select(columns)),
        "## Convergence (relative change of the mean loss over the last epoch)",
        markdown_table(convergence_table, digits=5),
        "## Configuration", f"```json\n{json.dumps(config_dump, indent=2)}\n```",
    ])
    run_id = publish("E1 target-matched weight", out, runs,
                     {"e1_summary": summary, "e1_per_prompt": pa.concat_tables(per_prompt),
                      "e1_convergence": convergence_table},
                     plots, report, {"config": config_dump})
    return AnalysisResult(report=str(out / "report.md"), plots=[str(p) for p in plots],
                          mlflow_run_id=run_id, rows=summary.to_pylist())


@stage("report-e1")
def report_target_match_task(
    config_dump: dict, prompts: TableRef, rollouts: TableRef, rewards: TableRef,
    reference_samples: TableRef, reference_probs: TableRef, fits: list[Fit], betas: list[float],
    success_threshold: float, out_dir: str, runs: RunsDirectory,
) -> AnalysisResult:
    return report_target_match(config_dump, prompts, rollouts, rewards, reference_samples,
                               reference_probs, fits, betas, success_threshold, out_dir, runs)
