"""Typed hand-offs: what a round's stages pass on, and what a round reports.

The summary's figures are named once, here; the SQL that computes them (sql/eval_summary.sql,
sql/weights_summary.sql, sql/rollout_stats.sql) must return exactly these names, or building
the summary fails, instead of the CLI, the plots or an experiment reading a missing key later.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from bolt_tasks.core.storage import ModelRef, TableRef


@dataclass(frozen=True)
class RoundRollouts:
    """A round's scored rollouts and the policies behind them."""

    prompts: TableRef
    reference: ModelRef  # pi_ref
    sampler: ModelRef  # pi_k, the policy that sampled (pi_ref in round 0)
    rollouts: TableRef
    rewards: TableRef


@dataclass(frozen=True)
class RoundOutputs:
    """Everything a round's stages produced, for its summary."""

    scored: RoundRollouts
    weights: TableRef
    prompt_stats: TableRef
    policy: ModelRef
    train_log: TableRef
    reference_eval: TableRef
    policy_eval: TableRef
    policy_logprobs: TableRef
    eval: TableRef
    replay: tuple[TableRef, ...] = ()  # a replaying round's pool and its log-probs (flows/replay.py)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StageSeconds(_Record):
    """Wall-clock seconds each stage took when it ran for this round (a cached stage keeps its
    first time; pi_ref reused from an earlier round or another pipeline counts 0)."""

    prompts: float
    bootstrap: float
    sampling: float
    scoring: float
    weights: float
    training: float
    evaluation: float
    replay: float = 0.0  # pooling earlier rounds' samples and scoring them under every sampler


class HeldoutFigures(_Record):
    """sql/eval_summary.sql over eval.parquet, plus the target error's noise floor."""

    heldout_prompts: int
    heldout_samples_per_prompt: int
    ref_accuracy: float
    policy_accuracy: float
    ref_accuracy_greedy: float
    policy_accuracy_greedy: float
    ref_pass_at_8: float
    policy_pass_at_8: float
    ref_share_below_0_3: float
    ref_share_above_0_6: float
    ref_share_never_solved: float
    ref_share_unsolved_in_32: float | None  # None with fewer than 32 samples per prompt
    ref_mean_reward: float
    policy_mean_reward: float
    kl: float
    objective_j: float
    ref_objective_j: float
    accuracy_gain: float
    accuracy_gain_se: float | None  # None with one held-out prompt
    target_accuracy: float
    target_error: float
    projection_gap: float
    heldout_verifier_errors: int
    target_error_noise_floor: float


class TrainingDataFigures(_Record):
    """sql/rollout_stats.sql and sql/weights_summary.sql over the round's training rollouts."""

    rollouts: int
    mean_response_tokens: float
    stop_fraction: float
    train_mean_reward: float
    verifier_errors: int  # training rollouts the verifier could not score
    train_prompts: int
    mean_ess: float
    mean_ess_fraction: float
    share_ess_fraction_below_0_1: float
    coverage: float
    rewarded_share: float  # training responses rewarded above 0
    informative_share: float  # training prompts whose weights are not all equal
    mean_target_success: float | None  # None when no prompt has a weighted success (rft)
    mean_support_price: float
    mean_distinct_responses: float


class RoundSummary(HeldoutFigures, TrainingDataFigures):
    """What a round reports: summary.json, `bolt run`'s table, the round's MLflow metrics."""

    pipeline: str
    round: int
    beta: float
    stage_seconds: StageSeconds
    round_dir: str
    policy: str
    reference: str
    sampler: str
    mlflow_run_id: str | None = None  # set once the round is logged
    tracking_uri: str | None = None
    mlflow_run_page: str | None = None  # the run in `mlflow ui` on its default port


class RefreshResult(_Record):
    parent_run_id: str
    rounds: list[RoundSummary]
    plot: str


class AnalysisResult(_Record):
    """An analysis or experiment: its report, plots, MLflow run and result rows."""

    report: str
    plots: list[str]
    mlflow_run_id: str
    rows: list[dict]
