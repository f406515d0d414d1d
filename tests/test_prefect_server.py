"""bolt's temporary Prefect server is the only one a command runs against, even when Prefect
was imported before it started (a user's verifier module may import Prefect)."""

import subprocess
import sys

import pytest

from cli_runs import own_server_env

pytestmark = pytest.mark.slow  # a temporary server of its own: 10 s

SCRIPT = """
from bolt_tasks.core.runtime import configure_environment
configure_environment()
import os
import prefect
from bolt_tasks.core import prefect_server
url = prefect_server.start()
from prefect import flow
from prefect.settings import get_current_settings
assert get_current_settings().api.url == url == os.environ["PREFECT_API_URL"]
flow(lambda: 1, name="probe")()
"""


def test_prefect_imported_before_the_server_starts_uses_that_server():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=300, env=own_server_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Starting temporary Prefect server" in output
    assert "prefect - Starting temporary server" not in output  # Prefect's own, a second one
    assert "Finished in state Completed()" in output
