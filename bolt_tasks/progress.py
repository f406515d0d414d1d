"""Progress for long loops: a live bar on a terminal, a log line every tenth otherwise.

Logs go to the `bolt_tasks` logger, which Prefect forwards to its run logs
(PREFECT_LOGGING_EXTRA_LOGGERS, set in bolt_tasks.runtime).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

logger = logging.getLogger("bolt_tasks")
T = TypeVar("T")


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    log_every = max(1, total // 10)
    live = sys.stderr.isatty()
    bar = Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=True, disable=not live,
    )
    with bar:
        task_id = bar.add_task(description, total=total)
        for done, item in enumerate(items, start=1):
            yield item
            bar.advance(task_id)
            if not live and (done % log_every == 0 or done == total):
                logger.info("%s: %d/%d", description, done, total)
