"""No orphans: a `bolt` command that is told to stop takes every process it started with it.

Prefect's temporary API server (a uvicorn subprocess) is stopped by an atexit hook, and the
vLLM worker by the job's own except clause. Python's default SIGTERM kills the process without
running either, and the server would live on holding a port and ~200 MB. So SIGTERM and SIGHUP
become SystemExit, like Ctrl-C becomes KeyboardInterrupt: finally blocks and atexit hooks run.
A last atexit hook terminates any child still alive (a worker of a library that does not
clean up after itself), and kills it if it does not stop within a few seconds. SIGKILL runs no
handler at all: the processes BOLT starts itself (the temporary Prefect server, verifier
workers, the vLLM worker) ask the kernel for a signal when their parent dies (die_with_parent).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import signal
import sys

import psutil

GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1
# Loaded once here: the child calls it between fork and exec, where loading a library is unsafe.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies, however it dies (Linux;
    elsewhere a no-op). For a child's preexec_fn, or called first thing in a worker."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Stopped(SystemExit):
    """The process was told to stop (SIGTERM, SIGHUP)."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signal_name = signal.Signals(signum).name


def _exit_on_signal(signum, frame):
    # Prefect's flow engine, when it sees SIGTERM itself, re-sends it to this process after
    # marking the run crashed: this handler then ends the process the same clean way.
    raise Stopped(signum)


def stop_children() -> None:
    """Terminate the processes this one started (and theirs), then kill what is left."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=GRACE_SECONDS)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def stop_with_children_on_signals() -> None:
    """Call once, early, in a command's main thread."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup bolt ...` keeps SIGHUP ignored
            signal.signal(signum, _exit_on_signal)
    # atexit runs hooks last-registered first: this one runs after Prefect's server hook.
    atexit.register(stop_children)
