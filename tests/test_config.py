"""Configuration errors name the field and stop the run before any output exists."""

import math

import pytest

from bolt_cli.main import main
from bolt_tasks.core.config import validate_round_config
from bolt_tasks.core.errors import BoltInputError


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf, 1e-310, 1e7])
def test_bad_beta_is_refused(beta):
    with pytest.raises(BoltInputError, match=r"field 'weighting.beta'.*finite number in \[1e-06, 1e\+06\]"):
        validate_round_config({"weighting": {"beta": beta}})


def test_n_below_one_is_refused():
    with pytest.raises(BoltInputError, match=r"field 'sampling.samples_per_prompt'.*greater than or equal to 1"):
        validate_round_config({"sampling": {"samples_per_prompt": 0}})


def test_prompt_files_come_in_pairs():
    with pytest.raises(BoltInputError, match=r"field 'task'.*given together"):
        validate_round_config({"task": {"prompts_file": "train.jsonl"}})


def test_unknown_field_is_named():
    with pytest.raises(BoltInputError, match=r"field 'training.epoch'"):
        validate_round_config({"training": {"epoch": 3}})


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["--beta", "0"], "weighting.beta"),
        (["--beta", "nan"], "weighting.beta"),
        (["--samples-per-prompt", "0"], "sampling.samples_per_prompt"),
    ],
)
def test_cli_refuses_bad_config_and_writes_nothing(tmp_path, capsys, arguments, fragment):
    runs = tmp_path / "runs"
    assert main(["run", "--runs-dir", str(runs), *arguments]) == 2
    assert fragment in capsys.readouterr().err
    assert not runs.exists()
