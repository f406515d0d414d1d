"""The unit tier starts no Prefect server (tests/conftest.py): a flow run in a unit test fails at
once, and a test that asks for the session's server must be marked slow."""

import os
import subprocess
import sys

import pytest

import conftest


def test_a_flow_in_a_unit_test_fails_at_once_without_a_server():
    from prefect import flow
    from prefect.settings import get_current_settings

    from bolt_tasks.core import prefect_server

    assert os.environ["PREFECT_API_URL"] == get_current_settings().api.url == conftest.NO_SERVER_URL
    assert prefect_server.start() is None  # what a `bolt` command would run: it starts nothing
    with pytest.raises(RuntimeError, match="Failed to reach API at .*/no-prefect-server-in-unit-tests/"):
        flow(lambda: 1, name="unit-tier-probe")()
    assert conftest.prefect_servers() == []


class Item:
    def __init__(self, nodeid, fixturenames, slow):
        self.nodeid, self.fixturenames, self.slow = nodeid, fixturenames, slow

    def get_closest_marker(self, name):
        return object() if name == "slow" and self.slow else None


def test_a_test_that_uses_the_server_and_is_not_slow_stops_the_collection():
    conftest.pytest_collection_modifyitems(None, [Item("t::slow", ["shared_prefect_server"], True),
                                                  Item("t::unit", ["tmp_path"], False)])
    with pytest.raises(pytest.UsageError, match="not marked slow.*: t::fast$"):
        conftest.pytest_collection_modifyitems(None, [Item("t::fast", ["shared_prefect_server"], False)])


def test_a_prefect_server_left_running_is_found():
    """What the teardown of every unit test looks for (a stand-in: it only has the command line)."""
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 "prefect.server.api.server:create_app"])
    try:
        [command] = conftest.prefect_servers()
        assert command.endswith("prefect.server.api.server:create_app")
    finally:
        stand_in.kill()
        stand_in.wait()
