"""The runs directory: the one place that knows every path under it.

    runs/
      mlflow.db, mlartifacts/, .mlflow-store.lock    MLflow store (unless MLFLOW_TRACKING_URI)
      reference/embedded-<recipe>/                   the embedded pi_ref
      experiments/<name>/                            experiment reports
      <pipeline>/.lock, rounds.json, rounds.png      one pipeline, its lock and lineage
      <pipeline>/round-<k>/                          one round: the registry's tables
                                                     (core/tables.py), policy/, config.json,
                                                     summary.json, plots, .prefect-cache/
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.tables import TABLES

REFRESH_SUFFIX = "-refresh"


def refresh_pipeline_name(pipeline: str) -> str:
    """Refreshed rounds of pipeline P live in P-refresh, never in P itself, whose round 0 a
    one-shot `bolt run` owns. The one rule, for the CLI, the deployments and RefreshConfig."""
    return pipeline if pipeline.endswith(REFRESH_SUFFIX) else f"{pipeline}{REFRESH_SUFFIX}"


@dataclass(frozen=True)
class RoundDirectory:
    """<pipeline>/round-<k>/, or a directory laid out like one (an E1 fit's fits/<fit>/)."""

    directory: Path

    def table(self, name: str) -> str:
        if name not in TABLES:
            raise KeyError(f"{name!r} is not a registered table (bolt_tasks/core/tables.py)")
        return str(self.directory / TABLES[name].file_name)

    @property
    def policy(self) -> str:
        return str(self.directory / "policy")

    @property
    def config_json(self) -> Path:
        return self.directory / "config.json"

    @property
    def summary_json(self) -> Path:
        return self.directory / "summary.json"

    @property
    def success_rates_png(self) -> Path:
        return self.directory / "success_rates.png"

    @property
    def loss_png(self) -> Path:
        return self.directory / "loss.png"

    @property
    def weights_png(self) -> Path:
        return self.directory / "weights.png"

    @property
    def plots(self) -> list[Path]:
        return [self.success_rates_png, self.loss_png, self.weights_png]

    def vllm_log(self, job: str) -> Path:
        return self.directory / f"vllm-{job}.log"

    @property
    def frontier(self) -> Path:
        return self.directory / "frontier"

    def fit(self, name: str) -> "RoundDirectory":
        return RoundDirectory(self.directory / "fits" / name)


@dataclass(frozen=True)
class PipelineDirectory:
    directory: Path

    @property
    def name(self) -> str:
        return self.directory.name

    def round(self, index: int) -> RoundDirectory:
        return RoundDirectory(self.directory / f"round-{index}")

    @property
    def rounds_json(self) -> Path:
        return self.directory / "rounds.json"

    @property
    def rounds_png(self) -> Path:
        return self.directory / "rounds.png"

    def completed_rounds(self) -> list[int]:
        """Round indices whose summary.json exists (written only after evaluation succeeded)."""
        return sorted(int(path.parent.name.removeprefix("round-"))
                      for path in self.directory.glob("round-*/summary.json"))

    @contextmanager
    def lock(self):
        """Hold <pipeline>/.lock for the duration: a second invocation of the same pipeline is
        refused instead of writing the same tables. The kernel drops the lock when the holder
        dies, even by SIGKILL, so a crashed run never blocks the next one."""
        path = self.directory / ".lock"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        except OSError as error:
            raise BoltInputError(f"{path}: cannot create the pipeline's lock file "
                                 f"({error.strerror or error}); is the runs directory writable?") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise BoltInputError(
                f"{path}: pipeline '{self.name}' is being run by {holder}; "
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


@dataclass(frozen=True)
class RunsDirectory:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "RunsDirectory":
        return cls(Path(path).expanduser().resolve())

    def __str__(self) -> str:
        return str(self.root)

    def create(self) -> None:
        """Create the runs directory, or say in one sentence why it cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as error:
            raise BoltInputError(f"{self.root}: the runs directory cannot be written "
                                 f"({error.strerror or error})") from None

    def pipeline(self, name: str) -> PipelineDirectory:
        if name in {"", ".", ".."} or "/" in name or name in {"reference", "experiments", "evaluations"}:
            raise BoltInputError(f"field 'pipeline': {name!r} cannot name a pipeline directory "
                                 f"under {self.root}")
        return PipelineDirectory(self.root / name)

    def round(self, pipeline: str, index: int) -> RoundDirectory:
        return self.pipeline(pipeline).round(index)

    def embedded_reference(self, recipe_key: str) -> Path:
        return self.root / "reference" / f"embedded-{recipe_key}"

    @property
    def evaluations(self) -> Path:
        """Held-out evaluations kept by content across rounds and pipelines
        (stages/evaluation_store.py)."""
        return self.root / "evaluations"

    def experiment(self, name: str) -> Path:
        return self.root / "experiments" / name

    @property
    def mlflow_store(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def mlflow_store_lock(self) -> Path:
        return self.root / ".mlflow-store.lock"

    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_store}"
