"""Progress for long loops: a live bar on a terminal, a log line every tenth otherwise.

Inside a Prefect flow or task the log lines go to its run logger (console and Prefect UI);
outside one, to the `bolt_tasks` logger. Prefect is not imported here: the stage functions run
without it (a GPU image without Prefect, bench/gpu_round.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from bolt_tasks.core.threads import fit_threads_to_free_cores

T = TypeVar("T")


def run_logger():
    if sys.modules.get("prefect") is None:  # no Prefect run is active where Prefect is not loaded
        return logging.getLogger("bolt_tasks")
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("bolt_tasks")


class ProgressCounter:
    """Counts `total` units of work done, as they are done (advance), in any order."""

    def __init__(self, total: int, description: str):
        self.total, self.description, self.done = total, description, 0
        self.log_every = max(1, total // 10)
        self.live = sys.stderr.isatty()
        self.logger = run_logger()
        self.bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), transient=True, disable=not self.live)
        self.bar.start()
        self.task_id = self.bar.add_task(description, total=total)

    def advance(self, units: int = 1) -> None:
        before, self.done = self.done, self.done + units
        self.bar.advance(self.task_id, units)
        # On a terminal the bar shows progress and the log gets the last line only, since log
        # lines written under a live bar garble it.
        crossed_a_tenth = self.done // self.log_every > before // self.log_every
        if self.done == self.total or (not self.live and crossed_a_tenth):
            self.logger.info("%s: %d/%d", self.description, self.done, self.total)

    def close(self) -> None:
        self.bar.stop()


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    counter = ProgressCounter(total, description)
    try:
        for item in items:
            fit_threads_to_free_cores()
            yield item
            counter.advance()
    finally:
        counter.close()
