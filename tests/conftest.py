import os
import time

from bolt_tasks.core.runtime import configure_environment

configure_environment()

import pytest  # noqa: E402
import torch  # noqa: E402

from bolt_tasks.policy.character_tokenizer import character_tokenizer  # noqa: E402
from bolt_tasks.policy.modeling import load_policy  # noqa: E402
from bolt_tasks.stages.reference import build_model  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def shared_prefect_server():
    """One Prefect server for the session, in this process and every `bolt` command the tests
    start (they inherit PREFECT_API_URL): each command would otherwise start a temporary server
    of its own, 5-25 s apiece. Tests of the temporary server itself run their commands with
    cli_runs.own_server_env(). The server stops with this process."""
    from bolt_tasks.core import prefect_server

    prefect_server.start(log=lambda line: None)


@pytest.fixture(scope="session")
def smollm2_runs_dir(tmp_path_factory):
    """One runs directory for the tests of the packaged SmolLM2, so its GGUF file is converted
    once (30-45 s) for the whole session, by whichever test needs it first."""
    return tmp_path_factory.mktemp("smollm2-runs")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained embedded-architecture policy: random weights make non-trivial log-probs."""
    directory = tmp_path_factory.mktemp("tiny-model")
    tokenizer = character_tokenizer()
    model = build_model(len(tokenizer), tokenizer, seed=123)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir):
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
