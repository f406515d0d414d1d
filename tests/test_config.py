"""Configuration errors name the field and stop the run before any output exists."""

import math

import pytest

from bolt_cli.main import main
from bolt_tasks.core.config import RefreshConfig, RoundConfig, SamplingConfig, validate_round_config
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


def test_evaluation_follows_the_rounds_sampling_unless_set():
    """Forgetting evaluation.max_new_tokens must not score truncated held-out answers, and the
    evaluation engine gets the round's GPU memory share and tensor parallelism."""
    config = RoundConfig.model_validate({"sampling": {"max_new_tokens": 512, "tensor_parallel_size": 2,
                                                      "gpu_memory_utilization": 0.6}})
    assert config.evaluation.max_new_tokens == 512
    assert config.evaluation.tensor_parallel_size == 2 and config.evaluation.gpu_memory_utilization == 0.6
    set_apart = RoundConfig.model_validate({"sampling": {"max_new_tokens": 512},
                                            "evaluation": {"max_new_tokens": 64}})
    assert set_apart.evaluation.max_new_tokens == 64
    refresh = RefreshConfig.model_validate({"round": {"sampling": {"max_new_tokens": 32}}})
    assert refresh.round.evaluation.max_new_tokens == 32
    # the resolved values are what the round states (config.json, cache keys, the form)
    assert RoundConfig().model_dump()["evaluation"]["max_new_tokens"] == SamplingConfig().max_new_tokens
