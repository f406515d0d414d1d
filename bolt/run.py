"""Rounds and refreshed rounds from Python: the `bolt run` and `bolt refresh` commands without
the command line. The inputs are checked first, in this process, so a bad prompt file costs a
second and raises BoltInputError naming the file, row and field before any server starts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from bolt_tasks.core import prefect_server
from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.config import RefreshConfig, RoundConfig, validate_round_config, validated
from bolt_tasks.core.recipes import RefreshRecipe, load_recipe
from bolt_tasks.core.results import RefreshResult, RoundSummary
from bolt_tasks.stages.input_checks import check_round_inputs

ConfigLike = RoundConfig | Mapping | str | Path


def round_config(config: ConfigLike | None) -> RoundConfig:
    """A RoundConfig from a RoundConfig, a mapping of its fields, or a round recipe (a JSON file
    or the name of a shipped recipe)."""
    if config is None:
        return RoundConfig()
    if isinstance(config, RoundConfig):
        return config
    if isinstance(config, Mapping):
        return validate_round_config(dict(config))
    recipe = load_recipe(config)
    if isinstance(recipe, RefreshRecipe):
        raise ValueError(f"{config} is a refresh recipe: pass it to run_refresh")
    return recipe


def refresh_config(config: RefreshConfig | RoundConfig | Mapping | str | Path | None) -> RefreshConfig:
    """A RefreshConfig from a RefreshConfig, a RoundConfig (the rounds' configuration), a mapping
    of RefreshConfig's fields, or a recipe (a refresh recipe, or a round recipe for the rounds)."""
    if config is None:
        return RefreshConfig()
    if isinstance(config, RefreshConfig):
        return config
    if isinstance(config, RoundConfig):
        return RefreshConfig(round=config)
    if isinstance(config, Mapping):
        return validated(RefreshConfig, dict(config), "refresh configuration")
    recipe = load_recipe(config)
    return recipe.refresh if isinstance(recipe, RefreshRecipe) else RefreshConfig(round=recipe)


def ensure_prefect_api(log: Callable[[str], None] = print) -> str | None:
    """Start BOLT's temporary Prefect server unless PREFECT_API_URL names one (then nothing
    starts: the runs show in that server's UI). The server ends with this process."""
    return prefect_server.start(log=log)


def run_round(config: ConfigLike | None = None, runs_dir: str | Path = "runs") -> RoundSummary:
    """One BOLT round, as `bolt run`: bootstrap pi_ref (cached), sample, score, weight, fit,
    evaluate. Finished stages are cached in `runs_dir`: calling it again with the same
    configuration returns at once. Returns the round's summary (accuracy before and after, gain
    and its standard error, KL, ESS, coverage, stage times, the MLflow run id)."""
    config = round_config(config)
    check_round_inputs(config, RunsDirectory.at(runs_dir))
    ensure_prefect_api()
    from flows.round import bolt_round

    return bolt_round(config=config, runs_dir=str(runs_dir))


def run_refresh(config: RefreshConfig | RoundConfig | Mapping | str | Path | None = None,
                runs_dir: str | Path = "runs") -> RefreshResult:
    """Refreshed rounds, as `bolt refresh`: each round samples from the newest policy (KL policy
    mirror descent), in pipeline <pipeline>-refresh; a pipeline continues after its last
    completed round. Returns the parent MLflow run, every round's summary and the plot."""
    config = refresh_config(config)
    check_round_inputs(config.round, RunsDirectory.at(runs_dir))
    ensure_prefect_api()
    from flows.refresh import bolt_refresh

    return bolt_refresh(config=config, runs_dir=str(runs_dir))
