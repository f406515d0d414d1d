"""BOLT's flows as Prefect deployments, served from this process against a Prefect server.

    bolt-round     on demand: one round (the UI shows RoundConfig as a form with help text)
    bolt-refresh   on a schedule: each run adds refreshed rounds to pipeline <pipeline>-refresh
                   (core/catalogue.refresh_pipeline_name, as for `bolt refresh`); the schedule
                   is shipped inactive, so nothing runs until you switch it on in the UI (or
                   pass --refresh-active, or a refresh recipe whose schedule is active); once
                   the deployment exists, the state set in the UI is kept across restarts of
                   `bolt serve`
    bolt-frontier, bolt-experiment-e1/e2/e3/e5   on demand

bolt-round and bolt-refresh run one flow run at a time; a run triggered while another holds the
slot waits in the queue (Prefect's ENQUEUE collision strategy) instead of failing on the
pipeline lock. Stopping `bolt serve` does not pause the deployments (a schedule switched on
stays on; its runs wait for the next `bolt serve`).

Run with `bolt serve` (PREFECT_API_URL must point at a server; docs/guide/prefect-ui.md).
"""

from __future__ import annotations

from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
)
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron, Interval

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import RefreshConfig, RoundConfig
from bolt_tasks.core.recipes import ScheduleConfig
from deployments.form_help import with_literal_help
from flows.experiments import (
    experiment_frontier,
    experiment_refresh,
    experiment_saturation,
    experiment_target_match,
)
from flows.frontier import bolt_frontier
from flows.refresh import bolt_refresh
from flows.round import bolt_round

REFRESH_DEPLOYMENT = "bolt-refresh/bolt-refresh"
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def schedule_state_on_server(deployment: str) -> bool | None:
    """Whether the served deployment's first schedule is active on the server (None: the
    deployment or its schedule does not exist yet)."""
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return None
    return found.schedules[0].active if found.schedules else None


def build_deployments(
    runs_dir: str, round_config: RoundConfig | None = None, refresh: RefreshConfig | None = None,
    schedule: ScheduleConfig = ScheduleConfig(), keep_schedule_state: bool = True,
) -> list:
    """The deployments: bolt-round runs `round_config`, bolt-refresh runs `refresh` (by default
    refreshed rounds of `round_config`) on `schedule`, whose `active` is its state when first
    created: afterwards the state on the server (what a user set in the UI) is kept."""
    runs_dir = str(RunsDirectory.at(runs_dir))
    round_config = round_config or RoundConfig()
    refresh = refresh or RefreshConfig(round=round_config)
    existing = schedule_state_on_server(REFRESH_DEPLOYMENT) if keep_schedule_state else None
    active = schedule.active if existing is None else existing
    refresh_timezone = schedule.timezone
    prefect_schedule = (
        Interval(schedule.interval_seconds, active=active, timezone=refresh_timezone)
        if schedule.interval_seconds else Cron(schedule.cron, active=active, timezone=refresh_timezone)
    )
    deployments = [
        bolt_round.to_deployment(
            name="bolt-round", tags=["bolt"], concurrency_limit=ONE_AT_A_TIME,
            parameters={"config": round_config.model_dump(mode="json"), "runs_dir": runs_dir},
            description="One BOLT round: sample from pi_ref, score, weight in SQL, weighted SFT, "
            "evaluate. On demand.",
        ),
        bolt_refresh.to_deployment(
            name="bolt-refresh", tags=["bolt"], schedules=[prefect_schedule],
            concurrency_limit=ONE_AT_A_TIME,
            parameters={"config": refresh.model_dump(mode="json"),
                        "runs_dir": runs_dir},
            description="Adds refreshed rounds (KL mirror descent) to a pipeline on a schedule "
            f"({refresh_timezone}). The schedule ships inactive: turn it on in the UI; that "
            "state survives restarts of bolt serve. One run at a time: an overlapping run waits.",
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
    return [with_literal_help(deployment) for deployment in deployments]


def serve_deployments(**options) -> None:
    # pause_on_shutdown=False: stopping the server of the flows must not switch schedules off
    serve(*build_deployments(**options), pause_on_shutdown=False)
