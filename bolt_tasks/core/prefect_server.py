"""The temporary Prefect API server a `bolt` command runs against when no PREFECT_API_URL is set.

Prefect would start the same server itself (a uvicorn subprocess serving
prefect.server.api.server:create_app), but only an atexit hook stops it: a `bolt` command
killed by SIGKILL, or by a library that calls os._exit, would leave it running with its port and
~200 MB. Started here, the server is this process's child with the kernel's parent-death signal
set (Linux), so it goes down with this process whatever ends it. Prefect reads PREFECT_API_URL
when it is imported: imported before start() (a user's verifier module may import it), it would
start a second temporary server of its own unless its settings are read again.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bolt_tasks.core.processes import die_with_parent

STARTUP_TIMEOUT_SECONDS = 180.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(log=print) -> str | None:
    """Start the server unless PREFECT_API_URL names one; set PREFECT_API_URL; return it."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log(f"Starting temporary Prefect server on http://127.0.0.1:{port}")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        # The settings Prefect gives its own temporary server: no UI, ephemeral mode.
        env=os.environ | {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                          "PREFECT__SERVER_FINAL": "1"},
        preexec_fn=die_with_parent,
    )
    atexit.register(stop, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not _healthy(api_url):
        if process.poll() is not None:
            raise RuntimeError(f"the temporary Prefect server exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the temporary Prefect server did not answer within "
                               f"{STARTUP_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.1)
    os.environ["PREFECT_API_URL"] = api_url
    # It serves no UI: no "View at <url>" lines pointing at pages that do not exist.
    os.environ.setdefault("PREFECT_UI_URL", "")
    if "prefect.context" in sys.modules:
        sys.modules["prefect.context"].refresh_global_settings_context()
    return api_url
