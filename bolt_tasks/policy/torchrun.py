"""Weighted SFT in torchrun's processes (training.launcher=torchrun): the stage writes a job
file beside the policy, runs `python -m torch.distributed.run` on it as a subprocess, relays its
output to the stage's log, and raises with its exit code and last lines if it fails.

The subprocess leads a process group of its own: when the stage is cancelled, interrupted or
fails, the whole group (torchrun's agent and every rank) is stopped; when the pipeline process
dies outright, the kernel stops torchrun (die_with_parent), whose agent stops its ranks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.core.processes import GRACE_SECONDS, die_with_parent
from bolt_tasks.core.progress import run_logger
from bolt_tasks.core.storage import write_text_atomic
from bolt_tasks.policy import distributed
from bolt_tasks.policy.modeling import discard_fit


class TrainingProcessesFailed(RuntimeError):
    pass


def torchrun_command(training: TrainingConfig, job_path: Path) -> list[str]:
    """torchrun's command line: this machine by itself (--standalone)."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={training.nproc_per_node}",
            "--nnodes=1", "--max-restarts=0", "--standalone", "-m", distributed.__name__, str(job_path)]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to torchrun's whole process group, then SIGKILL to what is left."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def train_with_torchrun(rollouts_path: str, weights_path: str, start_model: str,
                        training: TrainingConfig, out_dir: str, log_path: str) -> None:
    """Fit in training.nproc_per_node processes; rank 0 saves the policy to out_dir and the loss
    log to log_path."""
    job_path = Path(out_dir).with_name("torchrun-job.json")
    job = distributed.fit_job(rollouts_path, weights_path, start_model, training, out_dir, log_path)
    write_text_atomic(json.dumps(job, indent=1), job_path)
    command = torchrun_command(training, job_path)
    logger = run_logger()
    environment = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // training.nproc_per_node))))
    tail: deque[str] = deque(maxlen=40)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment, start_new_session=True, preexec_fn=die_with_parent)
    try:
        for line in process.stdout:
            tail.append(line.rstrip())
            logger.info("torchrun: %s", line.rstrip())
        code = process.wait()
    finally:
        stop_group(process)
    if code != 0:
        discard_fit(out_dir, log_path)
        raise TrainingProcessesFailed(
            f"torchrun ({training.nproc_per_node} processes, {training.parallelism}) failed with exit code {code} after "
            f"{time.perf_counter() - started:.0f} s; nothing was saved to {out_dir}; its last "
            "output:\n" + "\n".join(tail))
