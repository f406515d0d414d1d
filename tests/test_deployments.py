"""Against a real Prefect server on 127.0.0.1: `bolt serve` serves the deployments, a triggered
bolt-round completes and lands in MLflow, and an active interval schedule adds refresh rounds
on its own, and SIGTERM stops `bolt serve` with the flow runs it started. Every process started
here is stopped here."""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from bolt_tasks.core.catalogue import RunsDirectory
from cli_runs import session_commands, session_processes

TINY = ["--set", "reference.steps=60", "--set", "reference.batch_size=32",
        "--train-prompts", "24", "--set", "task.heldout_prompts=16",
        "--set", "evaluation.samples_per_prompt=8", "--samples-per-prompt", "4",
        "--set", "weighting.train_without_information=true"]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(1)


def healthy(url) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/health", timeout=2).status == 200
    except OSError:
        return False


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    runs = tmp_path_factory.mktemp("served-runs")
    api = f"http://127.0.0.1:{free_port()}/api"
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_API_URL": api, "DO_NOT_TRACK": "true",
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    port = api.split(":")[2].split("/")[0]
    logs = {name: open(home / f"{name}.log", "w") for name in ("server", "serve")}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", port], env=env, stdout=logs["server"],
                              stderr=subprocess.STDOUT, start_new_session=True)
    serving = None
    try:
        wait_for(lambda: healthy(api), 180, "the Prefect server")
        # The reference is built once up front so the served runs share it.
        subprocess.run([sys.executable, "-m", "bolt_cli", "bootstrap", "--runs-dir", str(runs),
                        *TINY], env=env, check=True, capture_output=True, timeout=300)
        serving = subprocess.Popen(
            [sys.executable, "-m", "bolt_cli", "serve", "--runs-dir", str(runs),
             "--pipeline", "served", *TINY, "--refresh-interval", "20", "--refresh-active"],
            env=env, stdout=logs["serve"], stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: "bolt-round" in subprocess.run(
            [str(BIN / "prefect"), "deployment", "ls"], env=env, capture_output=True, text=True
        ).stdout, 120, "the served deployments")
        yield {"env": env, "runs": runs, "home": home, "serving": serving}
    finally:
        for process in (serving, server):
            if process is not None:
                stop(process)
        for log in logs.values():
            log.close()


@pytest.mark.slow
def test_triggered_round_completes_and_is_tracked(served):
    result = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", "bolt-round/bolt-round", "--watch",
         "--watch-timeout", "400"],
        env=served["env"], capture_output=True, text=True, timeout=450)
    assert result.returncode == 0, result.stdout[-2000:] + (served["home"] / "serve.log").read_text()[-3000:]
    summary = json.loads((served["runs"] / "served" / "round-0" / "summary.json").read_text())
    client = mlflow.MlflowClient(RunsDirectory.at(served["runs"]).tracking_uri())
    experiment = client.get_experiment_by_name("bolt-served")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.data.tags["bolt.round"] for r in runs] == ["0"]
    assert runs[0].data.metrics["policy_accuracy"] == pytest.approx(summary["policy_accuracy"])
    flow_run = runs[0].data.tags["prefect.flow_run_id"]
    artifacts = prefect_api(served["env"], f"""
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from uuid import UUID
found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID("{flow_run}")])))
print(json.dumps([[a.type, a.key, a.data, a.task_run_id and str(a.task_run_id)] for a in found]
                 + [["flow run name", client.read_flow_run(UUID("{flow_run}")).name, None, None]]))
""")
    markdown = [data for kind, key, data, _ in artifacts if kind == "markdown" and key == "bolt-served-round-0"]
    assert len(markdown) == 1, artifacts
    # the flow run's own artifact (not a task run's), in a flow run named as the MLflow run
    assert [task_run for kind, key, _, task_run in artifacts if key == "bolt-served-round-0"] == [None]
    assert ["flow run name", "round 0 · served", None, None] in artifacts
    assert runs[0].info.run_name == "round 0 · served"
    assert f"| accuracy, temperature 1 | {summary['ref_accuracy']:.3f} | {summary['policy_accuracy']:.3f} |" in markdown[0]
    assert runs[0].info.run_id in markdown[0] and "workflowType=machine_learning" in markdown[0]
    # the round's registered policy is an MLflow model that loads and generates
    script = ("import mlflow; mlflow.set_tracking_uri(%r); "
              "print(mlflow.pyfunc.load_model('models:/bolt-served@newest').predict(['12+34='])[0])"
              % RunsDirectory.at(served["runs"]).tracking_uri())
    generated = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert generated.returncode == 0, generated.stderr[-3000:]
    text = generated.stdout.strip().splitlines()[-1]
    assert text.startswith("12+34=") and len(text) > len("12+34="), generated.stdout


@pytest.mark.slow
def test_active_schedule_adds_rounds_untriggered(served):
    pipeline = served["runs"] / "served-refresh"
    wait_for(lambda: (pipeline / "round-1" / "summary.json").exists(), 400,
             "two scheduled refresh rounds")
    rollouts = pipeline / "round-1" / "rollouts.parquet"
    import pyarrow.parquet as pq

    # named relative to the runs directory
    assert set(pq.read_table(rollouts)["sampler_model"].to_pylist()) == {"served-refresh/round-0/policy"}


@pytest.mark.slow
def test_sigterm_stops_serve_and_the_flow_runs_it_started(served):
    serving = served["serving"]
    # The 20 s refresh schedule keeps a flow run going in a subprocess of `bolt serve`.
    wait_for(lambda: len(session_processes(serving.pid)) > 1, 300, "a served flow run in progress")
    started = session_commands(serving.pid)
    os.kill(serving.pid, signal.SIGTERM)  # `kill PID`: the main process only
    # Prefect's runner gives a flow run it cancels up to 30 s to exit before SIGKILL.
    deadline = time.time() + 40
    while session_processes(serving.pid) and time.time() < deadline:
        time.sleep(0.2)
    left = session_commands(serving.pid)
    assert not left, (f"left 40 s after SIGTERM: {left}; started: {started}; serve log: "
                      + (served["home"] / "serve.log").read_text()[-3000:])


def prefect_api(env, code: str):
    """Run `code` (using `client`, a sync Prefect client) against the test's server; the JSON it
    prints last. In this process: a Python started per call would import Prefect each time, and
    polled every second that steals a core from the runs being waited for."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_URL, temporary_settings

    printed = io.StringIO()
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), \
            SyncPrefectClient(api=env["PREFECT_API_URL"]) as client, contextlib.redirect_stdout(printed):
        exec(code, {"client": client, "json": json})
    return json.loads(printed.getvalue().strip().splitlines()[-1])


REFRESH_SCHEDULE = """
deployment = client.read_deployment_by_name("bolt-refresh/bolt-refresh")
print(json.dumps({"paused": deployment.paused, "active": deployment.schedules[0].active,
                  "timezone": deployment.schedules[0].schedule.timezone,
                  "id": str(deployment.id), "schedule": str(deployment.schedules[0].id)}))
"""


def set_refresh_schedule(env, active: bool) -> None:
    found = prefect_api(env, REFRESH_SCHEDULE)
    prefect_api(env, f"""
from uuid import UUID
client.update_deployment_schedule(UUID("{found['id']}"), UUID("{found['schedule']}"), active={active})
print("true")
""")


def start_serving(served, *options):
    log = open(served["home"] / "serve-again.log", "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "bolt_cli", "serve", "--runs-dir", str(served["runs"]),
         "--pipeline", "served", *TINY, "--refresh-interval", "3600", *options],
        env=served["env"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: "Your deployments are being served" in (served["home"] / "serve-again.log").read_text(),
             120, "bolt serve to serve again")
    return process


@pytest.mark.slow
def test_schedule_state_survives_restarts_and_overlapping_runs_wait(served):
    env = served["env"]
    # after the SIGTERM of the test above: nothing was paused on the way out
    state = prefect_api(env, REFRESH_SCHEDULE)
    assert state["paused"] is False and state["active"] is True and state["timezone"] == "UTC"
    set_refresh_schedule(env, False)  # the user switches it off in the UI
    serving = start_serving(served, "--refresh-active")  # the flag sets only the initial state
    try:
        assert prefect_api(env, REFRESH_SCHEDULE)["active"] is False
    finally:
        stop(serving)
    (served["home"] / "serve-again.log").write_text("")
    set_refresh_schedule(env, True)  # and on again
    serving = start_serving(served)
    try:
        assert prefect_api(env, REFRESH_SCHEDULE)["active"] is True
        set_refresh_schedule(env, False)  # no scheduled runs while two triggered ones overlap
        prefect_api(env, f"""
from uuid import UUID
from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
    FlowRunFilterState, FlowRunFilterStateType)
left = client.read_flow_runs(
    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID("{state['id']}")])),
    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED", "PENDING"]))))
for run in left:  # runs the 20 s schedule queued earlier
    client.delete_flow_run(run.id)
print(json.dumps(len(left)))
""")
        runs = [prefect_api(env, """
from prefect.deployments import run_deployment
run = run_deployment("bolt-refresh/bolt-refresh", timeout=0)
print(json.dumps(str(run.id)))
""") for _ in range(2)]

        def final_states():
            return prefect_api(env, f"""
from uuid import UUID
runs = [client.read_flow_run(UUID(i)) for i in {runs!r}]
print(json.dumps([[r.state.type.value, r.state.name, str(r.start_time), str(r.end_time)] for r in runs]))
""")

        wait_for(lambda: all(s[0] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in final_states()),
                 600, "both refresh runs to finish")
        states = final_states()
        assert [s[0] for s in states] == ["COMPLETED", "COMPLETED"], states
        first, second = sorted(states, key=lambda s: s[2])
        assert second[2] >= first[3], states  # the second waited for the first, then ran
    finally:
        stop(serving)
