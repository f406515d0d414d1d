"""A real two-node Ray cluster on this machine: a head and a second node, each started with
`ray start` (two raylets, one CPU slot each), token authentication on as `ray start` sets it up.
A refresh's round 0 runs on it with its training ranks as Ray Train workers; rank 1 SIGKILLed as
the fit starts fails the command with one sentence naming the rank and its node, and leaves no
policy, loss log or evaluation behind. The same command again completes the round, ranks on both
nodes, with round 0's policy bit for bit a clean Ray fit's of the same inputs and
within 1e-5 of the one-process fit. No mocks: the cluster, Prefect and the fits are the real ones."""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.policy.training import train_policy
from cli_runs import bolt
from test_scale_out import TINY

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_prefect_server")]

RAY = str(Path(sys.executable).with_name("ray"))
PLACED = re.compile(r"weighted SFT ran on Ray: (.*)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_processes(temp_dir: Path) -> list[psutil.Process]:
    """The cluster's daemons (their command lines name its temp dir) and every process they
    started (the workers rename themselves `ray::...`)."""
    found = []
    for process in psutil.process_iter():
        try:
            if any(str(temp_dir) in part for part in process.cmdline()):
                found += [process, *process.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def two_nodes():
    """(address, environment) of a head and a second node, separate raylets with a CPU each."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    environment = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                                "RAY_USAGE_STATS_ENABLED": "0"}
    address = f"127.0.0.1:{free_port()}"
    common = ["--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
              "--disable-usage-stats"]
    try:
        for command in ([RAY, "start", "--head", f"--port={address.split(':')[1]}", "--include-dashboard=false",
                         *common], [RAY, "start", f"--address={address}", *common]):
            started = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield address, environment
    finally:
        processes = cluster_processes(temp_dir)
        for process in processes:
            try:
                process.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(processes, timeout=3)
        for process in alive:
            process.kill()


def on_ray(address: str) -> list[str]:
    return ["--executor", "ray", "--ray-address", address, "--set", "training.launcher=ray",
            "--set", "training.workers=2"]


def placements(output: str) -> list[dict[int, str]]:
    """Per fit, the node id each rank reported: {rank: node}."""
    return [{int(rank): node for rank, node in re.findall(r"rank (\d+) on node (\w+)", line)}
            for line in PLACED.findall(output)]


@pytest.fixture(scope="module")
def killed_then_rerun(two_nodes, tmp_path_factory):
    """Round 0 of a refresh on the two-node cluster, training on Ray, whose rank 1 is SIGKILLed
    as it starts the fit; then the same command again. (runs, failed run, rerun). One round: a
    second runs the same stages with round 0's policy as the sampler (tests/test_refresh.py covers
    that lineage) and cost 35 s of CI."""
    address, environment = two_nodes
    runs = tmp_path_factory.mktemp("killed") / "runs"
    # rho = 1: every prompt trained on, so the fit moves the parameters far enough for the
    # one-process comparison below to mean something
    command = ["refresh", "--runs-dir", str(runs), "--until-round", "0", *TINY, "--shards", "2",
               "--set", "weighting.zero_information_keep=1", *on_ray(address)]
    round_dir = runs / "tiny-refresh" / "round-0"
    placed = round_dir / "ray-train" / "ranks" / "rank-1.json"
    with open(runs.parent / "log", "w") as log:
        process = bolt(*command, log=log, env=environment)
        killed = None
        while process.poll() is None and killed is None:
            if placed.is_file():  # rank 1 is up and about to fit (it writes this first)
                time.sleep(0.5)
                killed = json.loads(placed.read_text())
                os.kill(killed["pid"], signal.SIGKILL)
            time.sleep(0.05)
        code = process.wait(600)
    failed = {"code": code, "killed": killed, "output": (runs.parent / "log").read_text(),
              "left": sorted(path.name for path in round_dir.iterdir())}
    rerun = bolt(*command, env=environment)
    return runs, failed, rerun


def test_a_training_worker_killed_mid_fit_fails_in_one_sentence_and_leaves_no_partial_tables(killed_then_rerun):
    runs, failed, _ = killed_then_rerun
    killed, output = failed["killed"], failed["output"]
    assert killed is not None and failed["code"] == 1, output[-4000:]
    round_dir = runs / "tiny-refresh" / "round-0"
    sentence = (f"the process of rank 1 of 2 on node {killed['node_id'][:12]} ({killed['node_ip']}, host "
                f"{killed['host']}, pid {killed['pid']}) died (killed, out of memory or crashed), and "
                f"the other 1 rank(s) stopped with it; nothing was saved to {round_dir / 'policy'}")
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: TrainingWorkersFailed: weighted SFT on Ray failed: {sentence}, and a "
                      "rerun fits again (bolt --debug ... shows the traceback)"]
    left = failed["left"]
    assert {"rollouts.parquet", "rewards.parquet", "weights.parquet"} <= set(left)
    assert "policy" not in left and ".policy.tmp" not in left and "ray-train" not in left
    assert not [name for name in left if name.endswith("eval.parquet") or name == "train_log.parquet"]


def test_the_rerun_trains_on_both_nodes_and_fits_what_a_clean_fit_and_one_process_fit(
        killed_then_rerun, two_nodes):
    runs, _, rerun = killed_then_rerun
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-4000:]
    assert "Using Ray cluster with 2 nodes" in output
    fits = placements(output)
    print("training ranks per round, by node:", fits)
    [ranks] = fits  # round 0
    assert sorted(ranks) == [0, 1] and len(set(ranks.values())) == 2  # one rank on each node
    assert "on each other node" not in output  # nobody is asked to start anything by hand

    import mlflow

    client = mlflow.MlflowClient(RunsDirectory.at(runs).tracking_uri())
    experiment = client.get_experiment_by_name("bolt-tiny-refresh").experiment_id
    rounds = [r for r in client.search_runs([experiment]) if "bolt.round" in r.data.tags]
    [run] = rounds
    assert run.data.tags["bolt.round"] == "0" and run.data.params["execution.executor"] == "ray"
    assert run.data.params["training.launcher"] == "ray" and run.data.params["training.workers"] == "2"

    round_dir = runs / "tiny-refresh" / "round-0"
    rollouts = pq.read_table(round_dir / "rollouts.parquet")
    start_model = str(runs / rollouts["sampler_model"][0].as_py())  # named relative to the runs dir
    on_two_nodes = load_file(round_dir / "policy" / "model.safetensors")
    losses = pq.read_table(round_dir / "train_log.parquet")["loss"].to_numpy()

    # a clean fit on Ray of the same inputs: the rerun's policy and losses, bit for bit (in a
    # process of its own: a Ray connection with the cluster's token would stay in this one)
    address, environment = two_nodes
    clean = runs.parent / "clean"
    fit = (
        "from bolt_tasks.core.config import TrainingConfig\n"
        "from bolt_tasks.core.config_execution import ExecutionConfig\n"
        "from bolt_tasks.policy.ray_training import train_on_ray\n"
        f"train_on_ray({str(round_dir / 'rollouts.parquet')!r}, {str(round_dir / 'weights.parquet')!r}, "
        f"{start_model!r}, TrainingConfig(batch_size=16, launcher='ray', workers=2), "
        f"ExecutionConfig(executor='ray', ray_address={address!r}), {str(clean / 'policy')!r}, "
        f"{str(clean / 'train_log.parquet')!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", fit], env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    clean_policy = load_file(clean / "policy" / "model.safetensors")
    assert max((clean_policy[name] - on_two_nodes[name]).abs().max().item() for name in clean_policy) == 0
    assert (pq.read_table(clean / "train_log.parquet")["loss"].to_numpy() == losses).all()

    # the same fit in one process, from the same start model, rollouts and weights
    train_policy(rollouts, pq.read_table(round_dir / "weights.parquet"), start_model,
                 TrainingConfig(batch_size=16), runs.parent / "inline", runs.parent / "inline.parquet")
    inline = load_file(runs.parent / "inline" / "model.safetensors")
    start = load_file(Path(start_model) / "model.safetensors")
    moved = max((inline[name] - start[name]).abs().max().item() for name in inline)
    difference = max((inline[name] - on_two_nodes[name]).abs().max().item() for name in inline)
    print(f"two Ray Train workers on two nodes vs one process: largest parameter difference "
          f"{difference:.2e} (the fit moved parameters by up to {moved:.2e})")
    assert moved > 3e-4 and difference < 1e-5
    inline_losses = pq.read_table(runs.parent / "inline.parquet")["loss"].to_numpy()
    assert len(losses) == len(inline_losses) > 0 and abs(losses - inline_losses).max() < 1e-4
