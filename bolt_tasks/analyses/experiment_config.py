"""Configuration of the experiments (E1, E2, E5): pydantic models, the Prefect UI's forms."""

from __future__ import annotations

from pydantic import Field

from bolt_tasks.analyses.frontier import DEFAULT_BETAS
from bolt_tasks.core.config import (
    RoundConfig,
    SamplingConfig,
    TaskConfig,
    TrainingConfig,
    _Frozen,
)


class TargetMatchConfig(_Frozen):
    """E1: the same rollouts fitted with every scheme over a beta grid, fits run to convergence."""

    round: RoundConfig = Field(
        default_factory=lambda: RoundConfig(
            pipeline="e1",
            task=TaskConfig(train_prompts=256),
            sampling=SamplingConfig(samples_per_prompt=32),
            training=TrainingConfig(epochs=20, learning_rate=1e-3, batch_size=64, schedule="cosine"),
        ),
        description="Data and fit: 256 training prompts x 32 samples; 20 epochs at lr 1e-3 "
        "decayed to 0 (cosine) converge the fits (loss change over the last epoch is reported).",
    )
    betas: list[float] = Field([0.5, 1.0, 2.0], description="Target temperatures.")
    schemes: list[str] = Field(
        ["bolt", "boltzmann_global", "rft", "reward", "sft"], description="Schemes to fit."
    )
    heldout_samples: int = Field(
        32, ge=8, description="pi_ref samples per held-out prompt for KL(pi*||pi_theta)."
    )


class SaturationConfig(_Frozen):
    """E2: one-shot saturation. Epochs at fixed N, and N at fixed epochs."""

    round: RoundConfig = Field(
        default_factory=lambda: RoundConfig(pipeline="e2"),
        description="The default round; pipelines e2-n<N>-epochs<E> are derived from it.",
    )
    epochs: list[int] = Field([1, 2, 4, 8], description="Epoch grid at fixed N.")
    samples_per_prompt: list[int] = Field([4, 8, 16, 32], description="N grid at fixed epochs.")
    fixed_samples_per_prompt: int = Field(8, description="N while epochs vary.")
    fixed_epochs: int = Field(2, description="Epochs while N varies.")


class FrontierExperimentConfig(_Frozen):
    """E5: the temperature-coverage-variance frontier with fitted policies on it."""

    round: RoundConfig = Field(
        default_factory=lambda: RoundConfig(pipeline="e5"),
        description="The default round; pipelines e5-beta<beta> are derived from it.",
    )
    betas: list[float] = Field(list(DEFAULT_BETAS), description="Frontier grid (no training).")
    trained_betas: list[float] = Field([0.25, 0.5, 1.0, 2.0], description="Betas actually fitted.")


class RefreshExperimentConfig(_Frozen):
    """E3: refreshed rounds against one round, at the same total number of samples per prompt."""

    round: RoundConfig = Field(
        default_factory=lambda: RoundConfig(pipeline="e3"),
        description="The default round; pipelines e3-oneshot and e3-refresh derive from it.",
    )
    rounds: int = Field(4, ge=2, description="K refreshed rounds of N/K samples each.")
    total_samples_per_prompt: int = Field(
        16, ge=2, description="N: one-shot samples N at once; refresh samples N/K per round."
    )
