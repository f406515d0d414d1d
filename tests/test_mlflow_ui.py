"""`bolt ui`: a real `mlflow ui` on the runs directory's store, links that name each BOLT
experiment in the model-training mode, and nothing left running once the command is stopped."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from bolt_cli.mlflow_ui import serve
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.tracking import experiment_id, mlflow_client

BOLT = str(Path(sys.executable).with_name("bolt"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_taken_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = psutil.Process().children(recursive=True)
        with pytest.raises(BoltInputError, match=f"--port {port}: cannot listen there"):
            serve(RunsDirectory.at(tmp_path / "runs"), "127.0.0.1", port, print)
        assert psutil.Process().children(recursive=True) == before


@pytest.mark.slow
def test_bolt_ui_serves_the_store_and_links_each_experiment(tmp_path):
    runs = RunsDirectory.at(tmp_path / "runs")
    client = mlflow_client(runs)
    wanted = {name: experiment_id(client, name, runs) for name in ("bolt-alpha", "bolt-beta")}
    client.create_experiment("someone-else")
    port = free_port()
    command = subprocess.Popen([BOLT, "ui", "--runs-dir", str(runs.root), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [command.stdout.readline() for _ in range(3)]
        assert lines[0].startswith(f"MLflow UI on http://127.0.0.1:{port} "), lines
        links = dict(line.strip().split(": ", 1) for line in lines[1:])
        assert set(links) == set(wanted)
        for name, link in links.items():
            ui, fragment = link.split("/#/")
            assert fragment == f"experiments/{wanted[name]}?workflowType=machine_learning"
            with urllib.request.urlopen(
                    f"{ui}/ajax-api/2.0/mlflow/experiments/get?experiment_id={wanted[name]}") as answer:
                assert json.load(answer)["experiment"]["name"] == name
        server = psutil.Process(command.pid).children(recursive=True)
        assert server
        # Against a tracking server, `bolt ui` starts nothing and prints the links on it.
        on_server = subprocess.run([BOLT, "ui", "--runs-dir", str(tmp_path / "elsewhere")],
                                   env={**os.environ, "MLFLOW_TRACKING_URI": ui},
                                   capture_output=True, text=True, timeout=120)
        assert on_server.returncode == 0, on_server.stderr
        assert on_server.stdout.splitlines()[1:] == [f"  {name}: {links[name]}" for name in sorted(links)]
        assert not (tmp_path / "elsewhere").exists()
    finally:
        command.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        command.send_signal(signal.SIGTERM)  # as `timeout` does: the command, then its group
        assert command.wait(timeout=60) == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(server, timeout=15)
    assert alive == []
    assert command.stdout.read() == ""  # stopping is not an error, nor a stopped round
