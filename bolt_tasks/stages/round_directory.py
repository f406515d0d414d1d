"""Which configuration owns a round directory: config.json, written once when the round's
inputs are known to be valid, and checked by every later run of that round."""

from __future__ import annotations

import json

from prefect import task
from prefect.cache_policies import NO_CACHE

from bolt_tasks.core.catalogue import RoundDirectory, RunsDirectory
from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.storage import write_text_atomic
from bolt_tasks.stages.input_checks import check_round_inputs


def differing_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    fields = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            fields += differing_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            fields.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return fields


def check_round_config(config: RoundConfig, round_dir: RoundDirectory) -> None:
    """One configuration per round directory: a cached stage's table lives at a fixed path, so a
    second configuration writing there would silently change what the first one's cache holds."""
    recorded = round_dir.config_json
    if not recorded.exists():
        return
    changes = differing_fields(json.loads(recorded.read_text()), config.model_dump(mode="json"))
    if changes:
        raise BoltInputError(
            f"{recorded}: round {config.round} of pipeline '{config.pipeline}' was run with another "
            f"configuration ({'; '.join(changes)}); choose another pipeline name (--pipeline)"
        )


@task(name="check-round-directory", cache_policy=NO_CACHE)
def check_round_task(config: RoundConfig, round_dir: RoundDirectory) -> None:
    check_round_config(config, round_dir)


@task(name="check-inputs", cache_policy=NO_CACHE)
def check_inputs_task(config: RoundConfig, runs: RunsDirectory) -> None:
    """The CLI's checks again, for runs started from the Prefect UI (stages/input_checks.py)."""
    check_round_inputs(config, runs)


@task(name="claim-round-directory", cache_policy=NO_CACHE)
def claim_round_task(config: RoundConfig, round_dir: RoundDirectory) -> None:
    """Record the configuration as soon as the inputs are known to be valid."""
    write_text_atomic(json.dumps(config.model_dump(mode="json"), indent=2), round_dir.config_json)
