"""Progress for long loops: a live bar on a terminal, a log line every tenth otherwise.

Inside a Prefect flow or task the log lines go to its run logger (console and Prefect UI);
outside one, to the `bolt_tasks` logger.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")


def run_logger():
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("bolt_tasks")


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    log_every = max(1, total // 10)
    live = sys.stderr.isatty()
    logger = run_logger()
    bar = Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True, disable=not live,
    )
    with bar:
        task_id = bar.add_task(description, total=total)
        for done, item in enumerate(items, start=1):
            yield item
            bar.advance(task_id)
            # On a terminal the bar shows progress and the log gets the last line only, since
            # log lines written under a live bar garble it.
            if done == total or (not live and done % log_every == 0):
                logger.info("%s: %d/%d", description, done, total)
