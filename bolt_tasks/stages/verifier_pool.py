"""Running a user's verifier in worker processes, with a time limit per response.

Each worker (stages/verifier_worker.py) scores the responses sent to it in order. A response
whose verifier call runs past the limit, or whose worker dies (a crash, os._exit, a signal), is
recorded as an error; the worker is replaced and the responses queued behind it go to the next
one. A response's clock starts when its worker begins it, so a slow start-up or a queue counts
against no one, and a spare worker stands ready for each working one, so replacing workers
(even all at once, when every response hangs) costs no start-up time.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from bolt_tasks.core.progress import ProgressCounter

IN_FLIGHT = 8  # responses queued at a worker: keeps it busy without hiding a hang for long
POLL_SECONDS = 0.05
STARTUP_SECONDS = 60.0  # importing the verifier's module


@dataclass
class _Worker:
    process: subprocess.Popen
    ready: bool = False
    queue: deque = field(default_factory=deque)  # indices sent, not yet answered, in order
    started: float = 0.0  # when the head of the queue began
    launched: float = field(default_factory=time.monotonic)
    buffer: bytes = b""


def _start_worker(name: str) -> _Worker:
    environment = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bolt_tasks.stages.verifier_worker", name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment,
    )
    os.set_blocking(process.stdout.fileno(), False)
    return _Worker(process)


def _stop(worker: _Worker) -> None:
    if worker.process.poll() is None:
        worker.process.kill()
    worker.process.wait()
    for stream in (worker.process.stdin, worker.process.stdout):
        try:
            stream.close()
        except OSError:
            pass


def _death(worker: _Worker) -> str:
    code = worker.process.wait()
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return f"verifier process died ({how})" + (" while scoring this response" if worker.ready else "")


def score_in_workers(
    name: str, items: list[tuple], timeout_s: float, workers: int, description: str,
) -> list[tuple[float | None, str | None]]:
    """(reward, error) for each (prompt, answer, response, finish_reason[, metadata]), in order."""
    results: list[tuple[float | None, str | None] | None] = [None] * len(items)
    pending = deque(range(len(items)))
    selector = selectors.DefaultSelector()
    pool: list[_Worker] = []
    progress = ProgressCounter(len(items), description)

    def launch() -> None:
        worker = _start_worker(name)
        selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
        pool.append(worker)

    def retire(worker: _Worker, error: str) -> None:
        """Record `error` for the response the worker was on; requeue the rest; replace it."""
        if not worker.ready:  # it never got to a response: every replacement would fail alike
            raise RuntimeError(f"the verifier worker for {name!r} did not start: {error}")
        selector.unregister(worker.process.stdout)
        pool.remove(worker)
        _stop(worker)
        if worker.queue:
            results[worker.queue.popleft()] = (None, error)
            progress.advance(1)
            pending.extendleft(reversed(worker.queue))
        if pending:
            launch()  # the new spare

    def feed(worker: _Worker) -> None:
        # Near the end, fewer each: responses queued behind a hang wait for its time limit.
        depth = max(1, min(IN_FLIGHT, len(pending) // workers))
        lines = []
        while pending and len(worker.queue) < depth:
            index = pending.popleft()
            if not worker.queue:
                worker.started = time.monotonic()
            worker.queue.append(index)
            lines.append(json.dumps([index, *items[index]]) + "\n")
        if lines:
            try:
                worker.process.stdin.write("".join(lines).encode())
                worker.process.stdin.flush()
            except BrokenPipeError:
                pass  # it died: its stdout reaches end of file and retire() handles it

    try:
        for _ in range(2 * min(workers, len(items))):  # as many spares as workers
            launch()
        while pending or any(w.queue for w in pool):
            for key, _ in selector.select(POLL_SECONDS):
                worker = key.data
                chunk = os.read(worker.process.stdout.fileno(), 1 << 16)
                if not chunk:
                    retire(worker, _death(worker))
                    continue
                *lines, worker.buffer = (worker.buffer + chunk).split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    if message == ["ready"]:
                        worker.ready = True
                        worker.started = time.monotonic()
                        continue
                    index, reward, error = message
                    results[worker.queue.popleft()] = (reward, error)
                    worker.started = time.monotonic()
                    progress.advance(1)
            now = time.monotonic()
            for worker in list(pool):
                if worker.ready and worker.queue and now - worker.started > timeout_s:
                    retire(worker, f"verifier timed out after {timeout_s:g} s")
                elif not worker.ready and now - worker.launched > STARTUP_SECONDS:
                    retire(worker, f"no answer {STARTUP_SECONDS:g} s after it started")
            busy = sum(1 for worker in pool if worker.queue)
            for worker in pool:
                if worker.ready and pending and (worker.queue or busy < workers):
                    busy += not worker.queue
                    feed(worker)
    finally:
        for worker in pool:
            _stop(worker)
        selector.close()
        progress.close()
    return results
