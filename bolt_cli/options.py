"""From command-line options to validated configurations: --config FILE, shortcuts, --set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel

from bolt_tasks.core.config import RefreshConfig, RoundConfig, validate_round_config, validated
from bolt_tasks.core.errors import BoltInputError

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
    parser.add_argument("--config", help="JSON file with a RoundConfig (any subset of fields)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one field, e.g. --set training.epochs=3 (repeatable)")
    parser.add_argument("--pipeline", help="pipeline name (runs/<pipeline>/round-<k>)")
    parser.add_argument("--beta", type=float, help="KL temperature beta > 0")
    parser.add_argument("--samples-per-prompt", type=int, help="N responses per prompt")
    parser.add_argument("--train-prompts", type=int, help="training prompts of the built-in task")
    parser.add_argument("--prompts", help="your training prompts (.jsonl or .parquet)")
    parser.add_argument("--heldout", help="your held-out prompts (.jsonl or .parquet)")
    parser.add_argument("--reference-model", help="model directory or hub id to use as pi_ref")
    parser.add_argument("--executor", choices=["local", "ray"],
                        help="who runs the prompt shards: this process, or a Ray cluster")
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


def _config_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except UnicodeDecodeError:
        raise BoltInputError(f"{path}: not a UTF-8 text file of JSON") from None
    except OSError as error:
        raise BoltInputError(f"{path}: cannot read configuration ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise BoltInputError(f"{path} line {error.lineno}: malformed JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise BoltInputError(f"{path}: a configuration is one JSON object of fields, not a "
                             f"{type(data).__name__}")
    return data


def build_config(args: argparse.Namespace) -> RoundConfig:
    data: dict = _config_file(args.config) if args.config else {}
    for name, dotted in SHORTCUTS.items():
        if getattr(args, name) is not None:
            _set(data, dotted, getattr(args, name), f"--{name.replace('_', '-')}")
    apply_assignments(data, args.set, ", e.g. weighting.beta=0.25")
    return validate_round_config(data)


def build_refresh_config(args: argparse.Namespace) -> RefreshConfig:
    """RefreshConfig puts the rounds in pipeline <pipeline>-refresh (core/catalogue.py)."""
    return validated(RefreshConfig, {"round": build_config(args), "add_rounds": args.add_rounds,
                                     "until_round": args.until_round}, "refresh options")


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if nested else value
    return merged


def build_experiment_config(model: type[BaseModel], name: str, assignments: list[str] | None):
    data = apply_assignments({}, assignments)
    return validated(model, _merge(model().model_dump(mode="json"), data), f"{name} configuration")
