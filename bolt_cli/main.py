"""The `bolt` command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bolt_tasks.core.runtime import configure_environment

configure_environment()  # before Prefect is imported anywhere

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from bolt_tasks.core.config import RoundConfig, validate_round_config  # noqa: E402
from bolt_tasks.core.errors import BoltInputError  # noqa: E402

console = Console()

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


def print_summary(summary: dict, seconds: float) -> None:
    table = Table(title=f"BOLT round {summary['round']} of '{summary['pipeline']}' "
                        f"(beta={summary['beta']:g}, held-out prompts={summary['heldout_prompts']}, "
                        f"{summary['samples_per_prompt']} samples each)")
    table.add_column("metric")
    table.add_column("pi_ref", justify="right")
    table.add_column("pi_BOLT", justify="right")
    table.add_row("accuracy, temperature 1", f"{summary['ref_accuracy']:.3f}",
                  f"{summary['policy_accuracy']:.3f}")
    table.add_row("accuracy, greedy", f"{summary['ref_accuracy_greedy']:.3f}",
                  f"{summary['policy_accuracy_greedy']:.3f}")
    table.add_row("pass@8", f"{summary['ref_pass_at_8']:.3f}", f"{summary['policy_pass_at_8']:.3f}")
    table.add_row("KL(pi || pi_ref)", "0", f"{summary['kl']:.4f}")
    table.add_row("J = reward - beta*KL", f"{summary['ref_objective_j']:.4f}",
                  f"{summary['objective_j']:.4f}")
    table.add_row("target accuracy p*", "", f"{summary['target_accuracy']:.3f}")
    table.add_row("mean |p_theta - p*|", "",
                  f"{summary['target_error']:.4f} (noise floor {summary['target_error_noise_floor']:.4f})")
    console.print(table)
    console.print(
        f"gain {100 * summary['accuracy_gain']:+.1f} points (SE {100 * summary['accuracy_gain_se']:.2f}); "
        f"training prompts: mean ESS/N {summary['mean_ess_fraction']:.3f}, "
        f"coverage {summary['coverage']:.3f}"
    )
    console.print(
        f"pi_ref per-prompt success rates: {100 * summary['ref_share_below_0_3']:.1f}% of prompts "
        f"below 0.3, {100 * summary['ref_share_above_0_6']:.1f}% above 0.6, "
        f"{100 * summary['ref_share_unsolved_in_32']:.1f}% expected unsolved in 32 samples"
    )
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary["stage_seconds"].items())
    console.print(f"stage compute time: {stages}")
    console.print(f"this invocation: {seconds:.1f}s wall-clock (cached stages are not re-run)")
    console.print(f"tables: {summary['round_dir']}")
    console.print(f"MLflow run {summary['mlflow_run_id']} in {summary['tracking_uri']} "
                  f"(browse: mlflow ui --backend-store-uri {summary['tracking_uri']})")


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

    round_config = build_config(args)
    if round_config.pipeline == "default":  # refreshed rounds never share bolt run's pipeline
        round_config = round_config.model_copy(update={"pipeline": "refresh"})
    config = RefreshConfig(round=round_config, add_rounds=args.add_rounds, until_round=args.until_round)
    start = time.perf_counter()
    result = bolt_refresh(config=config, runs_dir=args.runs_dir)
    table = Table(title=f"refreshed rounds of '{round_config.pipeline}'")
    for column in ("round", "sampler", "coverage", "ESS/N", "accuracy", "target p*", "KL", "KL(pi*||pi)"):
        table.add_column(column, justify="right")
    for s in result["rounds"]:
        table.add_row(str(s["round"]), Path(s["sampler"]).name, f"{s['coverage']:.3f}",
                      f"{s['mean_ess_fraction']:.3f}", f"{s['policy_accuracy']:.3f}",
                      f"{s['target_accuracy']:.3f}", f"{s['kl']:.3f}", f"{s['projection_gap']:.3f}")
    console.print(table)
    console.print(f"pi_ref accuracy {result['rounds'][0]['ref_accuracy']:.3f}; "
                  f"{time.perf_counter() - start:.1f}s wall-clock; plot {result['plot']}; "
                  f"MLflow parent run {result['parent_run_id']}")
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

    model = bootstrap_reference(config.reference, config.task, str(Path(args.runs_dir).resolve()))
    console.print(f"reference policy: {model.path} (trained in {model.seconds:.1f}s)")
    return 0


def command_sql(args: argparse.Namespace) -> int:
    from bolt_tasks.core.readonly_sql import open_runs, print_result, run_query, shell, usage

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


def print_report(result: dict) -> None:
    from rich.markdown import Markdown

    report = Path(result["report"]).read_text()
    console.print(Markdown(report.split("## Configuration")[0]))
    console.print(f"report: {result['report']}")
    console.print(f"plots: {', '.join(result['plots'])}")
    console.print(f"MLflow run: {result['mlflow_run_id']}")


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
        "refresh", help="add refreshed rounds (KL mirror descent) to a pipeline, default 'refresh'")
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
    try:
        return args.handler(args)
    except BoltInputError as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
