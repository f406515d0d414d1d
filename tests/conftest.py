"""Two tiers. The unit tier, `pytest -m "not slow"`, starts no Prefect server: each of its tests
runs with PREFECT_API_URL pointing at a port where nothing listens, so a Prefect flow it runs, in
this process (within 2 s) or in a `bolt` command it starts, fails with "Failed to reach API at
http://127.0.0.1:PORT/no-prefect-server-in-unit-tests/api/", and a Prefect server still running
after it (one started with PREFECT_API_URL removed) is an error at its teardown. A test that needs a
server asks for the session's one, `pytestmark = pytest.mark.usefixtures("shared_prefect_server")`
or the decorator, and must be marked slow (collection stops otherwise). CI runs both tiers."""

import os
import socket
import sys
import time
from urllib.parse import urlsplit

from bolt_tasks.core.runtime import configure_environment

configure_environment()

import pytest  # noqa: E402

SERVER_FIXTURE = "shared_prefect_server"
# Bound, never listening, held for the session: connecting is refused, and nothing else can
# take the port meanwhile.
_CLOSED_PORT = socket.socket()
_CLOSED_PORT.bind(("127.0.0.1", 0))
NO_SERVER_URL = f"http://127.0.0.1:{_CLOSED_PORT.getsockname()[1]}/no-prefect-server-in-unit-tests/api"
# A server the person running the tests named (PREFECT_API_URL) serves the tests that need one.
_GIVEN_API_URL = os.environ.pop("PREFECT_API_URL", None)
_server_url: str | None = None
os.environ["PREFECT_API_URL"] = NO_SERVER_URL  # before anything imports Prefect


def _use_prefect_api(url: str) -> None:
    """PREFECT_API_URL for this process, the `bolt` commands it starts, and Prefect's settings."""
    os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:  # else Prefect reads it when imported
        from prefect.settings import get_current_settings

        if get_current_settings().api.url != url:  # reading them again takes 40 ms
            sys.modules["prefect.context"].refresh_global_settings_context()


@pytest.fixture(scope="session")
def shared_prefect_server():
    """One Prefect server for the session, in this process and every `bolt` command the tests
    that ask for it start (they inherit PREFECT_API_URL): each command would otherwise start a
    temporary server of its own, 5-25 s apiece. Tests of the temporary server itself run their
    commands with cli_runs.own_server_env(). The server stops with this process. Session-scoped,
    it is up before any module-scoped fixture of the test that asks for it."""
    global _server_url
    if _GIVEN_API_URL:
        _server_url = _GIVEN_API_URL
        _use_prefect_api(_server_url)
    else:
        from bolt_tasks.core import prefect_server

        os.environ.pop("PREFECT_API_URL", None)
        _server_url = prefect_server.start(log=lambda line: None)
    return _server_url


def pytest_collection_modifyitems(config, items):
    """A test that uses the Prefect server is slow: the unit tier never starts one."""
    unmarked = [item.nodeid for item in items
                if SERVER_FIXTURE in item.fixturenames and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError(f"these tests use {SERVER_FIXTURE} but are not marked slow (the "
                                f"unit tier starts no Prefect server): {', '.join(unmarked)}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture: a module-scoped one of a server test (a `bolt run` made once for the
    # module) needs the server's URL; everything in a unit test gets the closed port.
    if SERVER_FIXTURE not in item.fixturenames:
        _use_prefect_api(NO_SERVER_URL)
    elif _server_url is not None:  # else shared_prefect_server starts it and sets it
        _use_prefect_api(_server_url)


_reported_servers: set[int] = set()


def prefect_servers() -> list[str]:
    """The command lines of the Prefect API servers this process started (bolt's or Prefect's own
    temporary server, both uvicorn serving prefect.server.api.server) that still run, except the
    session's shared one."""
    import psutil

    port = urlsplit(_server_url).port if _server_url else None
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if (any("prefect.server.api.server" in part for part in command)
                and not (port and str(port) in command) and child.pid not in _reported_servers):
            _reported_servers.add(child.pid)
            found.append(" ".join(command))
    return found


@pytest.fixture(autouse=True)
def _no_prefect_server_in_unit_tests(request):
    yield
    if request.node.get_closest_marker("slow") is None:  # a slow test may start its own
        started = prefect_servers()
        assert not started, (f"a unit test started a Prefect server (mark the test slow and use "
                             f"{SERVER_FIXTURE}): {started}")


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def smollm2_runs_dir(tmp_path_factory):
    """One runs directory for the tests of the packaged SmolLM2, so its GGUF file is converted
    once (30-45 s) for the whole session, by whichever test needs it first."""
    return tmp_path_factory.mktemp("smollm2-runs")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained embedded-architecture policy: random weights make non-trivial log-probs."""
    from bolt_tasks.policy.character_tokenizer import character_tokenizer
    from bolt_tasks.stages.reference import build_model

    directory = tmp_path_factory.mktemp("tiny-model")
    tokenizer = character_tokenizer()
    model = build_model(len(tokenizer), tokenizer, seed=123)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir):
    import torch

    from bolt_tasks.policy.modeling import load_policy

    return load_policy(tiny_model_dir, torch.device("cpu"))


def pytest_unconfigure(config):
    # Prefect stops its temporary server at interpreter exit and logs it to a stream pytest has
    # already closed; that log line is noise, not a failure.
    import logging

    logging.raiseExceptions = False


@pytest.fixture
def no_process_left(tmp_path):
    """After the test, no process may still work in tmp_path or name it on its command line:
    what a bolt command started there must have ended with it (10 s grace)."""
    yield
    import psutil

    def left():
        found = []
        for process in psutil.process_iter():
            try:
                if process.cwd() == str(tmp_path) or str(tmp_path) in " ".join(process.cmdline()):
                    found.append(" ".join(process.cmdline()))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    deadline = time.time() + 10
    while left() and time.time() < deadline:
        time.sleep(0.2)
    assert not left(), left()
