"""Process-wide defaults that must be set before Prefect is imported.

Embedded mode: with no PREFECT_API_URL, Prefect starts a temporary local server per process,
which takes seconds to start; analytics stay off because nothing outside the
package registries can be reached here.
"""

import copy
import logging
import os

DEFAULTS = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def configure_environment() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)


class _WithoutTraceback(logging.Formatter):
    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        record = copy.copy(record)  # other handlers (Prefect's API log) keep the traceback
        record.exc_info = record.exc_text = record.stack_info = None
        return self.inner.format(record)


def hide_prefect_tracebacks() -> None:
    """Prefect logs every failed task and flow with its traceback, two or three times over; on
    the console its one-line message is enough (`bolt --debug` keeps them; the Prefect UI always
    has them)."""
    import prefect.main  # noqa: F401  (configures Prefect's logging)

    loggers = [logging.getLogger()] + [
        logger for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("prefect") and isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))
