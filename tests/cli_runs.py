"""Running `bolt` as a user does, in a process of its own, and reading what Prefect logged."""

import os
import signal
import subprocess
import sys

import psutil


def sigint_as_at_a_terminal() -> None:
    """A child's preexec_fn: SIGINT at its default, so Python turns it into KeyboardInterrupt.
    A test run started in the background by a shell without job control (`pytest &` in a
    script, nohup) inherits SIGINT ignored, and would pass that on to every command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def bolt(*args, log=None, env=None, cwd=None, **popen):
    """`python -m bolt_cli ARGS`: run to completion (captured), or started with output to `log`,
    as from a terminal (SIGINT at its default)."""
    command = [sys.executable, "-m", "bolt_cli", *args]
    popen.setdefault("preexec_fn", sigint_as_at_a_terminal)
    if log is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd,
                              **popen)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, **popen)


def own_server_env() -> dict[str, str]:
    """The environment of a command that must start its own temporary Prefect server, as on a
    user's laptop, rather than use the test session's shared one (or, in a unit test, the closed
    port conftest.py points PREFECT_API_URL at). In a unit test, only for a command that must stop
    before any server starts: the test itself must check that (a server that goes with the
    command is gone by the teardown check)."""
    return {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}


def finished_states(output: str, task: str) -> list[str]:
    """The final states Prefect logged for the runs of `task`, e.g. ['Cached(type=COMPLETED)']."""
    return [line.split("Finished in state ")[1].strip() for line in output.splitlines()
            if f"Task run '{task}-" in line and "Finished in state" in line]


def session_processes(session_id: int) -> list[psutil.Process]:
    """Every live process of session `session_id` (a process started with start_new_session
    and everything it started, wherever they were reparented)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return found


def session_commands(session_id: int) -> list[str]:
    """The command lines of session `session_id`'s live processes. A process can exit between
    being listed and being read; it is left out, as it is no longer running."""
    commands = []
    for process in session_processes(session_id):
        try:
            commands.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:  # ZombieProcess included: it exited after being listed
            continue
    return commands
