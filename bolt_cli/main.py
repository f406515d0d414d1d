"""The `bolt` command: the top of the house, above the flows and the deployments."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bolt_tasks.core.runtime import configure_environment

configure_environment()  # before Prefect is imported anywhere

from pydantic import ValidationError  # noqa: E402
from rich.text import Text  # noqa: E402

from bolt_cli.printing import console, print_refresh, print_report, print_summary  # noqa: E402
from bolt_tasks.core.config import RoundConfig, validate_round_config  # noqa: E402
from bolt_tasks.core.errors import BoltInputError  # noqa: E402
from bolt_tasks.core.processes import Stopped, stop_with_children_on_signals  # noqa: E402

SHORTCUTS = {
    "beta": "weighting.beta",
    "samples_per_prompt": "sampling.samples_per_prompt",
    "train_prompts": "task.train_prompts",
    "prompts": "task.prompts_file",
    "heldout": "task.heldout_file",
    "reference_model": "reference.model",
    "pipeline": "pipeline",
}


def _set(data: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[leaf] = value


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _apply_assignments(data: dict, assignments: list[str] | None, example: str) -> dict:
    """--set KEY=VALUE options into a nested dict; VALUE is JSON when it parses as JSON."""
    for assignment in assignments or []:
        key, separator, value = assignment.partition("=")
        if not separator:
            raise BoltInputError(f"--set {assignment!r}: expected KEY=VALUE{example}")
        _set(data, key, _parse_value(value))
    return data


def build_config(args: argparse.Namespace) -> RoundConfig:
    data: dict = {}
    if args.config:
        try:
            data = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise BoltInputError(f"{args.config}: cannot read configuration ({error})") from None
    for name, dotted in SHORTCUTS.items():
        if getattr(args, name) is not None:
            _set(data, dotted, getattr(args, name))
    _apply_assignments(data, args.set, ", e.g. weighting.beta=0.25")
    return validate_round_config(data)


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


def command_run(args: argparse.Namespace) -> int:
    config = build_config(args)
    from flows.round import bolt_round  # Prefect import: after the environment is configured

    start = time.perf_counter()
    summary = bolt_round(config=config, runs_dir=args.runs_dir)
    print_summary(summary, time.perf_counter() - start)
    return 0


def command_refresh(args: argparse.Namespace) -> int:
    from bolt_tasks.core.config import RefreshConfig
    from flows.refresh import bolt_refresh

    # RefreshConfig puts the rounds in pipeline <pipeline>-refresh (one rule, core/catalogue.py).
    config = RefreshConfig(round=build_config(args), add_rounds=args.add_rounds,
                           until_round=args.until_round)
    start = time.perf_counter()
    print_refresh(bolt_refresh(config=config, runs_dir=args.runs_dir), time.perf_counter() - start)
    return 0


def command_serve(args: argparse.Namespace) -> int:
    import os

    if not os.environ.get("PREFECT_API_URL"):
        raise BoltInputError(
            "bolt serve needs a Prefect server: start one with `prefect server start --host "
            "127.0.0.1` and set PREFECT_API_URL=http://127.0.0.1:4200/api")
    from deployments.serve import serve_deployments

    serve_deployments(
        runs_dir=args.runs_dir, round_config=build_config(args), refresh_cron=args.refresh_cron,
        refresh_interval_seconds=args.refresh_interval, refresh_active=args.refresh_active,
    )
    return 0


def command_bootstrap(args: argparse.Namespace) -> int:
    config = build_config(args)
    from flows.bootstrap import bootstrap_reference

    model = bootstrap_reference(config.reference, config.task, args.runs_dir)
    console.print(f"reference policy: {model.path} (trained in {model.seconds:.1f}s)", markup=False)
    return 0


def command_sql(args: argparse.Namespace) -> int:
    from bolt_cli.sql_shell import print_result, shell, usage
    from bolt_tasks.core.readonly_sql import open_runs, run_query

    if args.query is None and not sys.stdin.isatty():
        console.print(usage(args.runs_dir), soft_wrap=True, highlight=False, markup=False)
        return 2
    connection = open_runs(args.runs_dir)
    if args.query is None:
        return shell(connection, console)
    print_result(console, run_query(connection, args.query))
    return 0


EXPERIMENTS = {
    "e1": ("experiment_target_match", "TargetMatchConfig", "E1 target-matched weight"),
    "e2": ("experiment_saturation", "SaturationConfig", "E2 one-shot saturation"),
    "e3": ("experiment_refresh", "RefreshExperimentConfig", "E3 refresh vs one shot"),
    "e5": ("experiment_frontier", "FrontierExperimentConfig", "E5 frontier with fitted points"),
}


def command_views(args: argparse.Namespace) -> int:
    from bolt_tasks.core.catalogue import RunsDirectory
    from bolt_tasks.core.tables import views_sql

    root = f"{RunsDirectory.at(args.runs_dir).root}/" if args.runs_dir else ""
    sys.stdout.write(views_sql(root))
    return 0


def command_frontier(args: argparse.Namespace) -> int:
    from bolt_tasks.analyses.frontier import DEFAULT_BETAS
    from flows.frontier import bolt_frontier

    try:
        betas = [float(b) for b in args.betas.split(",")] if args.betas else list(DEFAULT_BETAS)
    except ValueError:
        raise BoltInputError(f"--betas {args.betas!r}: expected numbers separated by commas") from None
    if any(not b > 0 for b in betas):
        raise BoltInputError(f"--betas {args.betas!r}: every beta must be > 0")
    print_report(bolt_frontier(pipeline=args.pipeline, round=args.round, runs_dir=args.runs_dir,
                               betas=betas))
    return 0


def command_experiment(args: argparse.Namespace) -> int:
    import flows.experiments
    from bolt_tasks.analyses import experiment_config

    flow_name, config_name, _ = EXPERIMENTS[args.name]
    data = _apply_assignments({}, args.set, "")
    model = getattr(experiment_config, config_name)
    defaults = model().model_dump(mode="json")
    try:
        config = model.model_validate(_merge(defaults, data))
    except ValidationError as error:
        raise BoltInputError(f"invalid {args.name} configuration: {error}") from None
    print_report(getattr(flows.experiments, flow_name)(config=config, runs_dir=args.runs_dir))
    return 0


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bolt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="bootstrap (cached), one BOLT round, evaluation")
    add_config_arguments(run)
    run.set_defaults(handler=command_run)
    refresh = commands.add_parser(
        "refresh", help="add refreshed rounds (KL mirror descent) to pipeline <pipeline>-refresh "
        "(default 'default-refresh')")
    add_config_arguments(refresh)
    refresh.add_argument("--add-rounds", type=int, default=1, help="rounds to add (default 1)")
    refresh.add_argument("--until-round", type=int, help="complete every round up to this index")
    refresh.set_defaults(handler=command_refresh)
    serve = commands.add_parser(
        "serve", help="serve the flows as Prefect deployments (bolt-round, bolt-refresh, ...)")
    add_config_arguments(serve)
    serve.add_argument("--refresh-cron", default="0 3 * * *",
                       help="bolt-refresh schedule (cron, default daily 03:00)")
    serve.add_argument("--refresh-interval", type=float,
                       help="bolt-refresh schedule as an interval in seconds, instead of cron")
    serve.add_argument("--refresh-active", action="store_true",
                       help="start with the schedule on (default: off until switched on in the UI)")
    serve.set_defaults(handler=command_serve)
    bootstrap = commands.add_parser("bootstrap", help="build the embedded reference policy")
    add_config_arguments(bootstrap)
    bootstrap.set_defaults(handler=command_bootstrap)
    sql = commands.add_parser("sql", help="read-only SQL over every table of the runs directory")
    sql.add_argument("query", nargs="?",
                     help="one query (SELECT, DESCRIBE, ...); without one: a prompt on a terminal")
    sql.add_argument("--runs-dir", default="runs", help="where runs, caches and MLflow live")
    sql.set_defaults(handler=command_sql)
    views = commands.add_parser(
        "views", help="print the CREATE VIEW statements of `bolt sql` for the duckdb CLI "
        "(sql/views.sql is this command's output)")
    views.add_argument("--runs-dir", help="make the views' globs absolute paths into this runs "
                       "directory (default: relative, for a duckdb started inside it)")
    views.set_defaults(handler=command_views)
    frontier = commands.add_parser(
        "frontier", help="ESS/N, coverage, target success and support price over a beta grid")
    frontier.add_argument("--runs-dir", default="runs", help="where runs, caches and MLflow live")
    frontier.add_argument("--pipeline", default="default", help="pipeline whose rollouts to use")
    frontier.add_argument("--round", type=int, default=0, help="round index k")
    frontier.add_argument("--betas", help="comma-separated beta grid, e.g. 0.1,0.5,1,2")
    frontier.set_defaults(handler=command_frontier)
    experiment = commands.add_parser("experiment", help="run an experiment: " + ", ".join(EXPERIMENTS))
    experiment.add_argument("name", choices=sorted(EXPERIMENTS))
    experiment.add_argument("--runs-dir", default="runs", help="where runs, caches and MLflow live")
    experiment.add_argument("--set", action="append", metavar="KEY=VALUE",
                            help="override a field of the experiment's configuration, "
                                 "e.g. --set round.task.train_prompts=128 (repeatable)")
    experiment.set_defaults(handler=command_experiment)
    args = parser.parse_args(argv)
    if argv is None:  # a process of its own: when told to stop, stop what it started too
        stop_with_children_on_signals()
    try:
        return args.handler(args)
    except BoltInputError as error:
        console.print(Text.assemble(("error:", "red"), f" {error}"), soft_wrap=True, highlight=False)
        return 2
    except (KeyboardInterrupt, Stopped) as stop:
        # Every finished stage is cached and every table was renamed into place whole.
        console.print(f"stopped ({getattr(stop, 'signal_name', 'SIGINT')}): finished stages are "
                      "cached; the same command continues where this one stopped", markup=False)
        return 130 if isinstance(stop, KeyboardInterrupt) else stop.code
