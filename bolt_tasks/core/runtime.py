"""Process-wide defaults that must be set before Prefect is imported.

Embedded mode: with no PREFECT_API_URL, Prefect starts a temporary local server per process,
which can take 12-25 s on a 2-core machine; analytics stay off because nothing outside the
package registries can be reached here.
"""

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
