"""Where a bench result came from: the date, commit, machine and command of the run.

Every bench whose JSON ends up in docs/bench/ writes `provenance()` under a "provenance" key, and
the docs' tables (docs/hooks/bench_tables.py) head each table with it. It is taken when the
result is written and never raises: a field it cannot find says "not recorded", so a bench that
ran for an hour still writes its figures.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_RECORDED = "not recorded"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def commit() -> str:
    """`git rev-parse HEAD`, with "-dirty" when tracked files have uncommitted changes."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return NOT_RECORDED
    return head + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu() -> str | None:
    """The GPU's name when torch sees CUDA; torch is imported only if it is installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        count = torch.cuda.device_count()
        return f"{count} x {torch.cuda.get_device_name(0)}" if count > 1 else torch.cuda.get_device_name(0)
    except Exception:  # a broken CUDA set-up must not lose a bench's figures
        return None


def machine() -> str:
    """One line: CPU model, core count and, if any, the GPU."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    parts = [cpu_model(), f"{cores} cores"]
    if name := gpu():
        parts.append(f"GPU: {name}")
    return ", ".join(parts)


def command(argv: list[str] | None = None) -> str:
    """`python bench/NAME.py ARGS` as the bench was started (sys.argv by default)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0]:
        return NOT_RECORDED
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return "python " + shlex.join([script.as_posix(), *argv[1:]])


def provenance(argv: list[str] | None = None) -> dict[str, str]:
    """{"date", "commit", "machine", "command"} of this run, the date in UTC (ISO 8601)."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit(), "machine": machine(), "command": command(argv)}


if __name__ == "__main__":
    import json

    print(json.dumps(provenance(), indent=2))
