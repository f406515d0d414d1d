"""BOLT's flows as Prefect deployments, served from this process against a Prefect server.

    bolt-round     on demand: one round (the UI shows RoundConfig as a form with help text)
    bolt-refresh   on a schedule: each run adds refreshed rounds to pipeline <pipeline>-refresh
                   (core/catalogue.refresh_pipeline_name, as for `bolt refresh`); the schedule
                   is shipped inactive, so nothing runs until you switch it on in the UI
                   (or pass --refresh-active)
    bolt-frontier, bolt-experiment-e1/e2/e5   on demand

Run with `bolt serve` (PREFECT_API_URL must point at a server; see README).
"""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron, Interval

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import RefreshConfig, RoundConfig
from flows.experiments import (
    experiment_frontier,
    experiment_refresh,
    experiment_saturation,
    experiment_target_match,
)
from flows.frontier import bolt_frontier
from flows.refresh import bolt_refresh
from flows.round import bolt_round

DEFAULT_REFRESH_CRON = "0 3 * * *"  # daily at 03:00


def build_deployments(
    runs_dir: str, round_config: RoundConfig | None = None, refresh_cron: str = DEFAULT_REFRESH_CRON,
    refresh_interval_seconds: float | None = None, refresh_active: bool = False,
) -> list:
    runs_dir = str(RunsDirectory.at(runs_dir))
    round_config = round_config or RoundConfig()
    schedule = (
        Interval(refresh_interval_seconds, active=refresh_active)
        if refresh_interval_seconds else Cron(refresh_cron, active=refresh_active)
    )
    return [
        bolt_round.to_deployment(
            name="bolt-round", tags=["bolt"],
            parameters={"config": round_config.model_dump(mode="json"), "runs_dir": runs_dir},
            description="One BOLT round: sample from pi_ref, score, weight in SQL, weighted SFT, "
            "evaluate. On demand.",
        ),
        bolt_refresh.to_deployment(
            name="bolt-refresh", tags=["bolt"], schedules=[schedule],
            parameters={"config": RefreshConfig(round=round_config).model_dump(mode="json"),
                        "runs_dir": runs_dir},
            description="Adds refreshed rounds (KL mirror descent) to a pipeline on a schedule. "
            "The schedule ships inactive: turn it on in the UI.",
        ),
        bolt_frontier.to_deployment(name="bolt-frontier", tags=["bolt"],
                                    parameters={"runs_dir": runs_dir}),
        experiment_target_match.to_deployment(name="bolt-experiment-e1", tags=["bolt"],
                                              parameters={"runs_dir": runs_dir}),
        experiment_saturation.to_deployment(name="bolt-experiment-e2", tags=["bolt"],
                                            parameters={"runs_dir": runs_dir}),
        experiment_refresh.to_deployment(name="bolt-experiment-e3", tags=["bolt"],
                                         parameters={"runs_dir": runs_dir}),
        experiment_frontier.to_deployment(name="bolt-experiment-e5", tags=["bolt"],
                                          parameters={"runs_dir": runs_dir}),
    ]


def serve_deployments(**options) -> None:
    serve(*build_deployments(**options))
