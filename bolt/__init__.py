"""BOLT's Python API: Boltzmann-targeted SFT, KL-regularised RLVR without online RL.

    from bolt import RoundConfig, run_round

    summary = run_round(RoundConfig(pipeline="quickstart"))
    print(f"gain {100 * summary.accuracy_gain:+.1f} points (SE {100 * summary.accuracy_gain_se:.2f})")

`run_round` and `run_refresh` run the Prefect flows that `bolt run` and `bolt refresh` run
(cached stages, an MLflow run per round). The stage functions below are the same work without
Prefect or caching: each reads and writes Arrow tables or Parquet files.
"""

from bolt_tasks.core.runtime import configure_environment

configure_environment()  # before Prefect is imported anywhere

from bolt.run import ensure_prefect_api, refresh_config, round_config, run_refresh, run_round  # noqa: E402
from bolt_tasks.core.config import (  # noqa: E402
    EvaluationConfig,
    ExecutionConfig,
    LoraConfig,
    RefreshConfig,
    ReferenceConfig,
    RoundConfig,
    SamplingConfig,
    TrainingConfig,
    WeightingConfig,
)
from bolt_tasks.core.config_task import TaskConfig  # noqa: E402
from bolt_tasks.core.errors import BoltInputError  # noqa: E402
from bolt_tasks.core.recipes import RefreshRecipe, ScheduleConfig, load_recipe, shipped_recipes  # noqa: E402
from bolt_tasks.core.results import RefreshResult, RoundSummary  # noqa: E402
from bolt_tasks.policy.training import train_policy  # noqa: E402
from bolt_tasks.sampling.rollouts import sample_rollouts  # noqa: E402
from bolt_tasks.stages.evaluation import evaluate_policy  # noqa: E402
from bolt_tasks.stages.prompts import write_prompts  # noqa: E402
from bolt_tasks.stages.verifiers import score_rollouts  # noqa: E402
from bolt_tasks.stages.weights import compute_weights, write_weights  # noqa: E402

__all__ = [
    "BoltInputError", "EvaluationConfig", "ExecutionConfig", "LoraConfig", "RefreshConfig",
    "RefreshRecipe", "RefreshResult", "ReferenceConfig", "RoundConfig", "RoundSummary",
    "SamplingConfig", "ScheduleConfig", "TaskConfig", "TrainingConfig", "WeightingConfig",
    "compute_weights", "ensure_prefect_api", "evaluate_policy", "load_recipe", "refresh_config",
    "round_config", "run_refresh", "run_round", "sample_rollouts", "score_rollouts",
    "shipped_recipes", "train_policy", "write_prompts", "write_weights",
]
