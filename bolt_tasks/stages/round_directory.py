"""Where a round's outputs live, runs/<pipeline>/round-<k>/, and which configuration owns it."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.storage import write_text_atomic


@dataclass(frozen=True)
class RoundLayout:
    directory: Path

    @classmethod
    def of(cls, runs_dir: str | Path, pipeline: str, round_index: int) -> "RoundLayout":
        return cls(Path(runs_dir).resolve() / pipeline / f"round-{round_index}")

    def table(self, name: str) -> str:
        return str(self.directory / f"{name}.parquet")

    @property
    def policy(self) -> str:
        return str(self.directory / "policy")


def differing_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    fields = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            fields += differing_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            fields.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return fields


def check_round_config(config: RoundConfig, layout: RoundLayout) -> None:
    """One configuration per round directory: a cached stage's table lives at a fixed path, so a
    second configuration writing there would silently change what the first one's cache holds."""
    recorded = layout.directory / "config.json"
    if not recorded.exists():
        return
    changes = differing_fields(json.loads(recorded.read_text()), config.model_dump(mode="json"))
    if changes:
        raise BoltInputError(
            f"{recorded}: round {config.round} of pipeline '{config.pipeline}' was run with another "
            f"configuration ({'; '.join(changes)}); choose another pipeline name (--pipeline)"
        )


@task(name="check-round-directory", cache_policy=NO_CACHE)
def check_round_task(config: RoundConfig, runs_dir: str) -> None:
    check_round_config(config, RoundLayout.of(runs_dir, config.pipeline, config.round))


@task(name="claim-round-directory", cache_policy=NO_CACHE)
def claim_round_task(config: RoundConfig, runs_dir: str) -> None:
    """Record the configuration as soon as the inputs are known to be valid."""
    layout = RoundLayout.of(runs_dir, config.pipeline, config.round)
    write_text_atomic(json.dumps(config.model_dump(mode="json"), indent=2), layout.directory / "config.json")


@contextmanager
def pipeline_lock(runs_dir: str | Path, pipeline: str):
    """Hold runs/<pipeline>/.lock for the duration: a second invocation of the same pipeline is
    refused instead of writing the same tables. The kernel drops the lock when the holder
    dies, even by SIGKILL, so a crashed run never blocks the next one."""
    directory = Path(runs_dir) / pipeline
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise BoltInputError(
            f"{directory / '.lock'}: pipeline '{pipeline}' is being run by {holder}; "
            "wait for it to finish (two runs of one pipeline would write the same tables)"
        ) from None
    try:
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
