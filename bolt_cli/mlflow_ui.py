"""`bolt ui`: MLflow's UI on a runs directory's store, and a link to each BOLT experiment that
opens it on its runs table.

MLflow 3 opens an experiment in its GenAI mode unless the address says
`?workflowType=machine_learning` or the browser was switched once; the experiment's tag does not
change that, and the server has no setting for it. So the links carry the parameter. Opening the
store through BOLT first also moves the paths in it when the runs directory was moved
(core/tracking_relocation.py), which a bare `mlflow ui` would not do.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.processes import Stopped, die_with_parent

READY_SECONDS = 120.0


def browser_host(host: str) -> str:
    """Where a browser on this machine reaches a server listening on `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def experiment_links(client, ui: str) -> list[tuple[str, str]]:
    """(name, address) of every BOLT experiment in the store, in the model-training mode."""
    experiments = client.search_experiments(filter_string="name LIKE 'bolt-%'", order_by=["name"])
    return [(e.name, f"{ui}/#/experiments/{e.experiment_id}?workflowType=machine_learning")
            for e in experiments]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the server will: a port left in TIME_WAIT by an earlier server is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise BoltInputError(f"--host {host} --port {port}: cannot listen there ({error.strerror}); "
                                 "choose another --port") from None


def _wait_until_ready(server: subprocess.Popen, health: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"mlflow ui exited with code {server.returncode}: " + " / ".join(tail)
                               + f" (whole log: {log})")
        try:
            with urllib.request.urlopen(health, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow ui did not answer {health} within {READY_SECONDS:.0f} s (log: {log})")


def serve(runs: RunsDirectory, host: str, port: int, print_line, workers: int = 1) -> int:
    """Start `mlflow ui` on the runs directory's store, print the links, and wait for it to end
    (Ctrl-C, or SIGTERM to this process, stops both). One worker by default: the UI of one
    person's runs, which starts in 8 s on 2 cores where MLflow's default of 4 takes 19 s."""
    from bolt_tasks.core.tracking import is_tracking_server, mlflow_client

    client = mlflow_client(runs)  # creates the store, or re-roots a moved one, before the UI reads it
    uri = runs.tracking_uri()
    if is_tracking_server(uri):
        print_line(f"MLflow logs to the server {uri}; BOLT's experiments there:")
        for name, link in experiment_links(client, uri.rstrip("/")):
            print_line(f"  {name}: {link}")
        return 0
    _check_port_free(host, port)
    log = runs.root / "mlflow-ui.log"
    ui = f"http://{browser_host(host)}:{port}"
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
             "--port", str(port), "--workers", str(workers)],
            stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
    try:
        _wait_until_ready(server, f"{ui}/health", log)
        print_line(f"MLflow UI on {ui} (store {uri}; its log: {log}); Ctrl-C stops it")
        links = experiment_links(client, ui)
        for name, link in links:
            print_line(f"  {name}: {link}")
        if not links:
            print_line("  no BOLT experiment yet: `bolt run` makes one")
        return server.wait()
    except KeyboardInterrupt:
        return 0
    except Stopped as stop:  # SIGTERM: the server goes too, and nothing else needs saying
        return stop.code
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """Terminate the server, killing it after 10 s. A stop signal that comes again meanwhile
    (`timeout` sends SIGTERM to the command and then to its process group) only asks again."""
    for _ in range(3):
        if server.poll() is not None:
            return
        try:
            server.terminate()
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        except (KeyboardInterrupt, Stopped):
            continue
