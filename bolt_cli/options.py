"""From command-line options to validated configurations: --config FILE, shortcuts, --set."""

from __future__ import annotations

import argparse
import json

from pydantic import BaseModel

from bolt_tasks.core.config import RefreshConfig, RoundConfig, validate_round_config, validated
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.recipes import RefreshRecipe, ScheduleConfig, is_refresh_recipe, read_recipe_file

SHORTCUTS = {
    "beta": "weighting.beta",
    "samples_per_prompt": "sampling.samples_per_prompt",
    "train_prompts": "task.train_prompts",
    "prompts": "task.prompts_file",
    "heldout": "task.heldout_file",
    "reference_model": "reference.model",
    "pipeline": "pipeline",
    "executor": "execution.executor",
    "ray_address": "execution.ray_address",
    "shards": "sampling.shards",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default="runs", help="where runs, caches and MLflow live")
    parser.add_argument("--config", help="a recipe: a JSON file with a RoundConfig (any subset of "
                        "fields) or a refresh recipe, or the name of a shipped recipe (recipes/)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one field, e.g. --set training.epochs=3 (repeatable)")
    parser.add_argument("--pipeline", help="pipeline name (runs/<pipeline>/round-<k>)")
    parser.add_argument("--beta", type=float, help="KL temperature beta > 0")
    parser.add_argument("--samples-per-prompt", type=int, help="N responses per prompt")
    parser.add_argument("--train-prompts", type=int, help="training prompts of the built-in task")
    parser.add_argument("--prompts", help="your training prompts (.jsonl or .parquet)")
    parser.add_argument("--heldout", help="your held-out prompts (.jsonl or .parquet)")
    parser.add_argument("--reference-model", help="model directory or hub id to use as pi_ref")
    parser.add_argument("--executor", choices=["local", "processes", "ray"],
                        help="who runs the prompt shards: this process, worker processes of this "
                        "machine (one per GPU), or a Ray cluster")
    parser.add_argument("--ray-address", help="Ray cluster to join with --executor ray (default: "
                        "a Ray instance on this machine)")
    parser.add_argument("--shards", type=int, help="prompt shards for sampling, scoring, evaluation")


def _set(data: dict, dotted: str, value, option: str) -> None:
    *parents, leaf = dotted.split(".")
    for depth, key in enumerate(parents):
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            prefix = ".".join(parents[: depth + 1])
            raise BoltInputError(f"{option}: field '{prefix}' was set to {data!r}, not a group of "
                                 f"fields, so '{dotted}' cannot be set inside it")
    data[leaf] = value


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_assignments(data: dict, assignments: list[str] | None, example: str = "") -> dict:
    """--set KEY=VALUE options into a nested dict; VALUE is JSON when it parses as JSON."""
    for assignment in assignments or []:
        key, separator, value = assignment.partition("=")
        if not separator or not key:
            raise BoltInputError(f"--set {assignment!r}: expected KEY=VALUE{example}")
        _set(data, key, _parse_value(value), f"--set {assignment}")
    return data


def _recipe(args: argparse.Namespace) -> dict:
    """--config's JSON object: {} without one."""
    return read_recipe_file(args.config) if args.config else {}


def _round_config(data: dict, args: argparse.Namespace) -> RoundConfig:
    for name, dotted in SHORTCUTS.items():
        if getattr(args, name) is not None:
            _set(data, dotted, getattr(args, name), f"--{name.replace('_', '-')}")
    apply_assignments(data, args.set, ", e.g. weighting.beta=0.25")
    return validate_round_config(data)


def build_config(args: argparse.Namespace) -> RoundConfig:
    """The round: --config (a round recipe), then the shortcuts, then --set."""
    data = _recipe(args)
    if is_refresh_recipe(data):
        raise BoltInputError(f"{args.config} is a refresh recipe: run it with `bolt refresh "
                             f"--config {args.config}` or serve it with `bolt serve --config "
                             f"{args.config}`")
    return _round_config(data, args)


def build_refresh_recipe(args: argparse.Namespace) -> tuple[RoundConfig, RefreshRecipe]:
    """Refreshed rounds and their schedule: --config (a refresh recipe, or a round recipe for
    the rounds), the shortcuts and --set on the rounds, then --add-rounds/--until-round and the
    schedule options where given. Returns the rounds' configuration as given (a one-shot round's,
    for bolt-round) and the recipe, whose rounds go to pipeline <pipeline>-refresh."""
    data = _recipe(args)
    recipe = validated(RefreshRecipe, data if is_refresh_recipe(data) else {},
                       f"refresh recipe {args.config}")
    refresh = recipe.refresh.model_dump(mode="json")
    round_data = data if not is_refresh_recipe(data) else data["refresh"].get("round", {})
    round_config = _round_config(dict(round_data), args)
    refresh["round"] = round_config
    for field in ("add_rounds", "until_round"):
        if getattr(args, field, None) is not None:
            refresh[field] = getattr(args, field)
    schedule = recipe.schedule.model_dump()
    for field, option in (("cron", "refresh_cron"), ("interval_seconds", "refresh_interval"),
                          ("timezone", "refresh_timezone")):
        if getattr(args, option, None) is not None:
            schedule[field] = getattr(args, option)
    if getattr(args, "refresh_active", False):
        schedule["active"] = True
    return round_config, RefreshRecipe(refresh=validated(RefreshConfig, refresh, "refresh options"),
                                       schedule=validated(ScheduleConfig, schedule, "schedule options"))


def build_refresh_config(args: argparse.Namespace) -> RefreshConfig:
    return build_refresh_recipe(args)[1].refresh


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if nested else value
    return merged


def build_experiment_config(model: type[BaseModel], name: str, assignments: list[str] | None):
    data = apply_assignments({}, assignments)
    return validated(model, _merge(model().model_dump(mode="json"), data), f"{name} configuration")
