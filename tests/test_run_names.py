"""Flow-run names as Prefect computes them at a run's start: from the run's parameters, which
are models when a flow is called from Python and plain dicts when a run comes from the UI."""

import prefect.runtime.flow_run
import pytest

from bolt_tasks.core.config import ReferenceConfig, RefreshConfig, RoundConfig
from bolt_tasks.core.run_names import (
    bootstrap_flow_run_name,
    experiment_flow_run_name,
    frontier_flow_run_name,
    refresh_flow_run_name,
    round_flow_run_name,
)


@pytest.fixture
def parameters(monkeypatch):
    def set_parameters(values: dict):
        monkeypatch.setattr(prefect.runtime.flow_run, "parameters", values)

    return set_parameters


@pytest.mark.parametrize("as_dict", [False, True])
def test_round_and_refresh_names_read_models_and_dicts(parameters, as_dict):
    round_config = RoundConfig(pipeline="gsm", round=3)
    refresh = RefreshConfig(round=round_config, add_rounds=2)
    parameters({"config": round_config.model_dump(mode="json") if as_dict else round_config})
    assert round_flow_run_name() == "round 3 · gsm"
    parameters({"config": refresh.model_dump(mode="json") if as_dict else refresh})
    assert refresh_flow_run_name() == "+2 rounds · gsm-refresh"


def test_bootstrap_name_says_which_reference(parameters):
    parameters({"reference": ReferenceConfig()})
    assert bootstrap_flow_run_name() == "reference · embedded"
    parameters({"reference": {"model": "/models/SmolLM2-135M-Instruct/"}})
    assert bootstrap_flow_run_name() == "reference · SmolLM2-135M-Instruct"
    parameters({})
    assert bootstrap_flow_run_name() == "reference · embedded"


def test_frontier_and_experiment_names_say_what_they_read(parameters):
    parameters({"pipeline": "gsm", "round": 2})
    assert frontier_flow_run_name() == "frontier · round 2 · gsm"
    parameters({"config": {"round": {"pipeline": "e1-base"}}})
    assert experiment_flow_run_name("E1 target match")() == "E1 target match · e1-base"
    parameters({})
    assert experiment_flow_run_name("E3 refresh vs one shot")() == "E3 refresh vs one shot · default"
