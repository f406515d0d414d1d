"""The `bolt` command: the top of the house, above the flows and the deployments.

Commands that run a round check its inputs first, in this process, before any Prefect server
starts: a bad input costs a second and one line on stderr (exit code 2). Any other failure is
one line too (exit code 1); --debug shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bolt_tasks.core.runtime import configure_environment

configure_environment()  # before Prefect is imported anywhere

from rich.text import Text  # noqa: E402

from bolt_cli.options import (  # noqa: E402
    add_config_arguments,
    build_config,
    build_experiment_config,
    build_refresh_config,
    build_refresh_recipe,
)
from bolt_cli.printing import console, errors, print_refresh, print_report, print_summary  # noqa: E402
from bolt_tasks.core.catalogue import RunsDirectory  # noqa: E402
from bolt_tasks.core.errors import BoltInputError  # noqa: E402
from bolt_tasks.core.processes import Stopped, stop_with_children_on_signals  # noqa: E402

EXPERIMENTS = {
    "e1": ("experiment_target_match", "TargetMatchConfig", "E1 target-matched weight"),
    "e2": ("experiment_saturation", "SaturationConfig", "E2 one-shot saturation"),
    "e3": ("experiment_refresh", "RefreshExperimentConfig", "E3 refresh vs one shot"),
    "e5": ("experiment_frontier", "FrontierExperimentConfig", "E5 frontier with fitted points"),
}


def start_prefect(args: argparse.Namespace) -> None:
    """In a process of its own: start the temporary Prefect server (unless PREFECT_API_URL
    names one) and keep Prefect's tracebacks off the console (unless --debug)."""
    if not args.own_process:
        return
    from bolt_tasks.core import prefect_server
    from bolt_tasks.core.runtime import hide_prefect_tracebacks

    prefect_server.start(log=lambda line: console.print(line, markup=False))
    if not args.debug:
        hide_prefect_tracebacks()


def check_then_start_prefect(args: argparse.Namespace, round_config) -> None:
    """Check the round's inputs before anything starts, then start Prefect."""
    from bolt_tasks.stages.input_checks import check_round_inputs

    check_round_inputs(round_config, RunsDirectory.at(args.runs_dir))
    start_prefect(args)


def command_run(args: argparse.Namespace) -> int:
    config = build_config(args)
    check_then_start_prefect(args, config)
    from flows.round import bolt_round

    start = time.perf_counter()
    summary = bolt_round(config=config, runs_dir=args.runs_dir)
    print_summary(summary, time.perf_counter() - start, RunsDirectory.at(args.runs_dir).root)
    return 0


def command_refresh(args: argparse.Namespace) -> int:
    config = build_refresh_config(args)
    check_then_start_prefect(args, config.round)
    from flows.refresh import bolt_refresh

    start = time.perf_counter()
    print_refresh(bolt_refresh(config=config, runs_dir=args.runs_dir), time.perf_counter() - start,
                  RunsDirectory.at(args.runs_dir).root)
    return 0


def command_bootstrap(args: argparse.Namespace) -> int:
    config = build_config(args)
    check_then_start_prefect(args, config)
    from flows.bootstrap import bootstrap_reference

    model = bootstrap_reference(config.reference, config.task, args.runs_dir)
    console.print(f"reference policy: {model.path} (trained in {model.seconds:.1f}s)", markup=False)
    return 0


def command_experiment(args: argparse.Namespace) -> int:
    from bolt_tasks.analyses import experiment_config

    flow_name, config_name, _ = EXPERIMENTS[args.name]
    config = build_experiment_config(getattr(experiment_config, config_name), args.name, args.set)
    check_then_start_prefect(args, config.round)
    import flows.experiments

    print_report(getattr(flows.experiments, flow_name)(config=config, runs_dir=args.runs_dir))
    return 0


def command_serve(args: argparse.Namespace) -> int:
    if not os.environ.get("PREFECT_API_URL"):
        raise BoltInputError(
            "bolt serve needs a Prefect server: start one with `prefect server start --host "
            "127.0.0.1` and set PREFECT_API_URL=http://127.0.0.1:4200/api")
    round_config, recipe = build_refresh_recipe(args)
    RunsDirectory.at(args.runs_dir).create()
    from deployments.serve import serve_deployments

    serve_deployments(runs_dir=args.runs_dir, round_config=round_config, refresh=recipe.refresh,
                      schedule=recipe.schedule)
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


def command_views(args: argparse.Namespace) -> int:
    from bolt_tasks.core.tables import views_sql

    root = f"{RunsDirectory.at(args.runs_dir).root}/" if args.runs_dir else ""
    sys.stdout.write(views_sql(root))
    return 0


def command_frontier(args: argparse.Namespace) -> int:
    from bolt_tasks.analyses.frontier import DEFAULT_BETAS

    try:
        betas = [float(b) for b in args.betas.split(",")] if args.betas else list(DEFAULT_BETAS)
    except ValueError:
        raise BoltInputError(f"--betas {args.betas!r}: expected numbers separated by commas") from None
    if any(not b > 0 for b in betas):
        raise BoltInputError(f"--betas {args.betas!r}: every beta must be > 0")
    RunsDirectory.at(args.runs_dir).pipeline(args.pipeline)  # refuses a name that is not one
    start_prefect(args)
    from flows.frontier import bolt_frontier

    print_report(bolt_frontier(pipeline=args.pipeline, round=args.round, runs_dir=args.runs_dir,
                               betas=betas))
    return 0


def command_ui(args: argparse.Namespace) -> int:
    from bolt_cli.mlflow_ui import serve

    return serve(RunsDirectory.at(args.runs_dir), args.host, args.port,
                 lambda line: console.print(line, markup=False, soft_wrap=True, highlight=False),
                 args.workers)


def parser() -> argparse.ArgumentParser:
    bolt = argparse.ArgumentParser(prog="bolt", description=__doc__)
    bolt.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    commands = bolt.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="bootstrap (cached), one BOLT round, evaluation")
    add_config_arguments(run)
    run.set_defaults(handler=command_run)
    refresh = commands.add_parser(
        "refresh", help="add refreshed rounds (KL mirror descent) to pipeline <pipeline>-refresh "
        "(default 'default-refresh')")
    add_config_arguments(refresh)
    refresh.add_argument("--add-rounds", type=int,
                         help="rounds to add (default: the refresh recipe's, else 1)")
    refresh.add_argument("--until-round", type=int, help="complete every round up to this index")
    refresh.set_defaults(handler=command_refresh)
    serve = commands.add_parser(
        "serve", help="serve the flows as Prefect deployments (bolt-round, bolt-refresh, ...)")
    add_config_arguments(serve)
    serve.add_argument("--refresh-cron",
                       help="bolt-refresh schedule (cron; default: the refresh recipe's, else daily 03:00)")
    serve.add_argument("--refresh-interval", type=float,
                       help="bolt-refresh schedule as an interval in seconds, instead of cron")
    serve.add_argument("--refresh-active", action="store_true",
                       help="create the schedule switched on (default: off until switched on in the "
                       "UI); once the deployment exists, the state on the server is kept")
    serve.add_argument("--refresh-timezone",
                       help="time zone of the cron schedule (IANA name; default: the refresh "
                       "recipe's, else UTC; shown in the UI)")
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
    ui = commands.add_parser(
        "ui", help="MLflow's UI on the runs directory's store, with a link to each BOLT "
        "experiment that opens on its runs table")
    ui.add_argument("--runs-dir", default="runs", help="where runs, caches and MLflow live")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    ui.add_argument("--workers", type=int, default=1,
                    help="server processes (default 1; more for a UI several people use)")
    ui.set_defaults(handler=command_ui)
    experiment = commands.add_parser("experiment", help="run an experiment: " + ", ".join(EXPERIMENTS))
    experiment.add_argument("name", choices=sorted(EXPERIMENTS))
    experiment.add_argument("--runs-dir", default="runs", help="where runs, caches and MLflow live")
    experiment.add_argument("--set", action="append", metavar="KEY=VALUE",
                            help="override a field of the experiment's configuration, "
                                 "e.g. --set round.task.train_prompts=128 (repeatable)")
    experiment.set_defaults(handler=command_experiment)
    return bolt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # In a process of its own (not called from a test): stop what it started when told to stop,
    # own the Prefect server, and import a 'module:function' verifier from the current directory.
    args.own_process = argv is None
    if args.own_process:
        stop_with_children_on_signals()
        sys.path.insert(0, os.getcwd())
    try:
        return args.handler(args)
    except BoltInputError as error:
        errors.print(Text.assemble(("error:", "red"), f" {error}"), soft_wrap=True)
        return 2
    except (KeyboardInterrupt, Stopped) as stop:
        # Every finished stage is cached and every table was renamed into place whole.
        errors.print(f"stopped ({getattr(stop, 'signal_name', 'SIGINT')}): finished stages are "
                     "cached; the same command continues where this one stopped", markup=False)
        return 130 if isinstance(stop, KeyboardInterrupt) else stop.code
    except Exception as error:
        if args.debug:
            raise
        errors.print(Text.assemble(("error:", "red"), f" {type(error).__name__}: {error} "
                                   "(bolt --debug ... shows the traceback)"), soft_wrap=True)
        return 1
