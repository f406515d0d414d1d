"""A round's plots, logged to MLflow: matplotlib, Agg backend (no display), written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bolt_tasks.core.storage import save_figure_atomic  # noqa: E402


def success_rate_plot(eval_path: str, beta: float, out_path: str | Path) -> Path:
    """Per held-out prompt: pi_ref's success rate (x) against the fitted policy's (y), with the
    exact BOLT target p*(p) that sql/eval.sql computed for each prompt."""
    table = pq.read_table(eval_path)
    reference = table["reference_success_rate"].to_numpy()
    policy = table["policy_success_rate"].to_numpy()
    difficulty = table["difficulty"].to_numpy(zero_copy_only=False)
    order = np.argsort(reference)
    target = table["target_success_rate"].to_numpy()
    figure, axes = plt.subplots(figsize=(5.5, 5))
    if not np.isnan(difficulty.astype(float)).any():  # user prompt files carry no difficulty
        for group in np.unique(difficulty):
            chosen = difficulty == group
            axes.scatter(reference[chosen], policy[chosen], s=10, alpha=0.6,
                         label=f"difficulty {group} ({chosen.sum()} prompts)")
    else:
        axes.scatter(reference, policy, s=10, alpha=0.6, label="held-out prompt")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="no change")
    axes.plot(
        reference[order], target[order], color="tab:red", label=f"target p* (beta={beta:g})"
    )
    axes.set_xlabel("pi_ref success rate per held-out prompt")
    axes.set_ylabel("fitted policy success rate")
    axes.set_title(f"before vs after: accuracy {reference.mean():.3f} -> {policy.mean():.3f}")
    axes.legend(loc="lower right", fontsize=8)
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=120)
    plt.close(figure)
    return Path(out_path)


def loss_plot(train_log_path: str, out_path: str | Path) -> Path:
    table = pq.read_table(train_log_path)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(table["step"].to_numpy(), table["loss"].to_numpy())
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("weighted NLL")
    axes.set_title("weighted-SFT loss")
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=120)
    plt.close(figure)
    return Path(out_path)


DIFFICULTY_BINS = [0.0, 0.1, 0.3, 0.6, 1.0]


def weights_plot(weights_path: str, prompt_stats_path: str, eval_path: str, out_path: str | Path) -> Path:
    """Three panels: the distribution of the rollouts' weights (mean 1 per prompt when normalised
    by Zhat), ESS/N per training prompt (coverage: the share with a success among its samples),
    and held-out accuracy before and after by pi_ref's success rate on the prompt."""
    weights = pq.read_table(weights_path)["weight"].to_numpy()
    stats = pq.read_table(prompt_stats_path)
    ess_fraction = stats["ess_fraction"].to_numpy()
    covered = stats["covered"].to_numpy(zero_copy_only=False)
    evaluation = pq.read_table(eval_path)
    reference = evaluation["reference_success_rate"].to_numpy()
    policy = evaluation["policy_success_rate"].to_numpy()

    figure, (weight_axes, ess_axes, difficulty_axes) = plt.subplots(1, 3, figsize=(14, 4))
    weight_axes.hist(weights, bins=40, color="tab:blue")
    weight_axes.set_yscale("log")
    weight_axes.set_xlabel("weight of a rollout")
    weight_axes.set_ylabel("rollouts")
    weight_axes.set_title(f"{len(weights)} rollouts: weights (max {weights.max():.3g})")

    ess_axes.hist(ess_fraction, bins=np.linspace(0, 1, 21), color="tab:green")
    ess_axes.set_xlabel("ESS / N of a training prompt")
    ess_axes.set_ylabel("prompts")
    ess_axes.set_title(f"mean ESS/N {ess_fraction.mean():.3f}; coverage {covered.mean():.3f}")

    bins = np.clip(np.digitize(reference, DIFFICULTY_BINS[1:-1]), 0, len(DIFFICULTY_BINS) - 2)
    labels, before, after, counts = [], [], [], []
    for index in range(len(DIFFICULTY_BINS) - 1):
        chosen = bins == index
        low, high = DIFFICULTY_BINS[index], DIFFICULTY_BINS[index + 1]
        labels.append(f"[{low:g}, {high:g}{']' if high == 1 else ')'}")
        counts.append(int(chosen.sum()))
        before.append(reference[chosen].mean() if chosen.any() else np.nan)
        after.append(policy[chosen].mean() if chosen.any() else np.nan)
    positions = np.arange(len(labels))
    difficulty_axes.bar(positions - 0.2, before, 0.4, label="pi_ref", color="grey")
    difficulty_axes.bar(positions + 0.2, after, 0.4, label="fitted policy", color="tab:orange")
    difficulty_axes.set_xticks(positions, [f"{label}\n{n} prompts" for label, n in zip(labels, counts)],
                               fontsize=8)
    difficulty_axes.set_xlabel("pi_ref success rate on the held-out prompt")
    difficulty_axes.set_ylabel("held-out accuracy")
    difficulty_axes.set_ylim(0, 1)
    difficulty_axes.legend(fontsize=8)
    difficulty_axes.set_title("accuracy by difficulty, before and after")
    figure.tight_layout()
    save_figure_atomic(figure, out_path, dpi=110)
    plt.close(figure)
    return Path(out_path)
