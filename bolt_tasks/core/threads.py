"""Torch's intra-op thread count, fitted to the cores other processes leave free.

Two threads on two cores beside another CPU-bound process make three runnable threads for two
cores: the OS deschedules one of ours, and at every small op's barrier its partner spins
through its time slice waiting for it (bench/contention.py measures it; the docs' benchmarks
page has the figures). One thread on the core the competitor leaves free is never
waited for. So long loops (every `track`ed loop: bootstrap, training, sampling, evaluation)
look, at most twice a second, at how busy the machine is apart from this process, and use as
many threads as there are free cores (at least one, at most the count the process started
with); when the competitor stops they go back up. BOLT_FIT_THREADS=0 keeps the thread count fixed.
"""

from __future__ import annotations

import math
import os
import sys
import time

import psutil

CHECK_EVERY_S = 0.5


class FreeCoreThreads:
    """Samples the machine's and this process's CPU time; sets torch's thread count."""

    def __init__(self):
        self.cores = len(os.sched_getaffinity(0))
        self.process = psutil.Process()
        self.preferred = None
        self.last = None

    def _sample(self) -> tuple[float, float, float]:
        system = psutil.cpu_times()
        # Linux counts guest time inside user time: not added again
        busy = sum(getattr(system, name, 0.0) for name in
                   ("user", "nice", "system", "irq", "softirq", "steal"))
        own = self.process.cpu_times()
        return time.monotonic(), busy, own.user + own.system

    def check(self) -> None:
        torch = sys.modules.get("torch")
        if torch is None or os.environ.get("BOLT_FIT_THREADS") == "0":
            return
        if self.preferred is None:
            self.preferred, self.last = torch.get_num_threads(), self._sample()
            return
        if time.monotonic() - self.last[0] < CHECK_EVERY_S:
            return
        now = self._sample()
        wall = now[0] - self.last[0]
        others = max(0.0, (now[1] - self.last[1]) - (now[2] - self.last[2])) / wall
        self.last = now
        threads = max(1, min(self.preferred, math.floor(self.cores - others + 0.5)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)


_THREADS = FreeCoreThreads()


def fit_threads_to_free_cores() -> None:
    _THREADS.check()
