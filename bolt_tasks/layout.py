"""Where a round's outputs live: runs/<pipeline>/round-<k>/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
