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
