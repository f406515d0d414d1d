"""core/threads.py: torch's thread count follows the cores other processes leave free (the fix
for a 5-37x slowdown beside one competing process, bench/contention.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from bolt_tasks.core import threads
from bolt_tasks.core.threads import FreeCoreThreads


def spin_until(governor: FreeCoreThreads, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    x = torch.randn(64, 64)
    while time.monotonic() < deadline:
        governor.check()
        x = (x @ x).tanh()  # this process's own work is never counted as another's


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def busy_cores_elsewhere(seconds: float = 1.0) -> float:
    import psutil

    psutil.cpu_percent(percpu=False)
    time.sleep(seconds)
    return psutil.cpu_percent(percpu=False) / 100 * psutil.cpu_count()


@pytest.mark.slow  # 5 s of spinning
@pytest.mark.skipif(len(os.sched_getaffinity(0)) != 2, reason="the figures below are for 2 cores")
def test_one_thread_beside_a_busy_process_and_two_after_it_ends(restore_threads, monkeypatch):
    if busy_cores_elsewhere() > 0.3:
        pytest.skip("the machine is busy with other work: 'alone' cannot be tested")
    monkeypatch.delenv("BOLT_FIT_THREADS", raising=False)
    torch.set_num_threads(2)
    governor = FreeCoreThreads()
    spin_until(governor, 1.2)
    assert torch.get_num_threads() == 2  # alone: nothing else is busy
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        spin_until(governor, 1.5)
        assert torch.get_num_threads() == 1
    finally:
        hog.kill()
        hog.wait()
    spin_until(governor, 1.5)
    assert torch.get_num_threads() == 2  # never above the count it started with, and back to it


def test_a_fixed_thread_count_when_asked(restore_threads, monkeypatch):
    monkeypatch.setenv("BOLT_FIT_THREADS", "0")
    torch.set_num_threads(2)
    governor = FreeCoreThreads()
    governor.cores = 1  # would otherwise drop to one thread at its first check
    spin_until(governor, 1.2)
    assert torch.get_num_threads() == 2


def test_every_tracked_loop_checks(monkeypatch):
    calls = []
    monkeypatch.setattr(threads._THREADS, "check", lambda: calls.append(1))
    from bolt_tasks.core.progress import track

    assert list(track(range(5), 5, "loop")) == list(range(5))
    assert len(calls) == 5
