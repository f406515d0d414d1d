"""What runs are called in the Prefect and MLflow UIs: the round first, then the pipeline, so
that a name cut short by a UI column still tells "round 0" from "round 1" of a long pipeline
name. A flow run is named as its round's MLflow run; the other flows' runs say what they are
for first (the reference they build, the round a frontier reads, the experiment)."""

from __future__ import annotations

from bolt_tasks.core.catalogue import refresh_pipeline_name


def round_run_name(pipeline: str, round_index: int) -> str:
    return f"round {round_index} · {pipeline}"


def refresh_run_name(pipeline: str, first_round: int, last_round: int) -> str:
    return f"rounds {first_round}-{last_round} · {pipeline}"


def _field(config, *path, default=None):
    """A field of a configuration passed as a model (from Python) or a dict (from the UI)."""
    for name in path:
        config = config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)
    return config


def round_flow_run_name() -> str:
    """bolt-round's flow run: named from its parameters, as Prefect calls this at the run's start."""
    from prefect.runtime import flow_run

    config = flow_run.parameters.get("config") or {}
    return round_run_name(_field(config, "pipeline", default="default"), _field(config, "round", default=0))


def refresh_flow_run_name() -> str:
    """bolt-refresh's flow run: the rounds it adds to which refresh pipeline."""
    from prefect.runtime import flow_run

    config = flow_run.parameters.get("config") or {}
    pipeline = refresh_pipeline_name(_field(config, "round", "pipeline", default="default"))
    until = _field(config, "until_round")
    added = _field(config, "add_rounds", default=1)
    rounds = f"until round {until}" if until is not None else f"+{added} round{'s' if added != 1 else ''}"
    return f"{rounds} · {pipeline}"


def bootstrap_flow_run_name() -> str:
    """bolt-bootstrap's flow run: the reference it builds, the user's model or the embedded one."""
    from pathlib import PurePath

    from prefect.runtime import flow_run

    model = _field(flow_run.parameters.get("reference") or {}, "model")
    return f"reference · {PurePath(model).name if model else 'embedded'}"


def frontier_flow_run_name() -> str:
    """bolt-frontier's flow run: the round whose rollouts it reads."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    return f"frontier · {round_run_name(parameters.get('pipeline', 'default'), parameters.get('round', 0))}"


def experiment_flow_run_name(label: str):
    """An experiment flow's run namer: the experiment, then the pipeline its rounds start from."""

    def name() -> str:
        from prefect.runtime import flow_run

        config = flow_run.parameters.get("config") or {}
        return f"{label} · {_field(config, 'round', 'pipeline', default='default')}"

    return name
