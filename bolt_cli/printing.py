"""What the `bolt` commands print: a round's summary, refreshed rounds, an analysis report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from bolt_tasks.core.results import AnalysisResult, RefreshResult, RoundSummary
from bolt_tasks.core.tracking import is_tracking_server

console = Console()
errors = Console(stderr=True, highlight=False)


def _number(value: float | None, digits: int, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{scale * value:.{digits}f}"


def print_summary(summary: RoundSummary, seconds: float, runs_root) -> None:
    s = summary
    table = Table(title=f"BOLT round {s.round} of '{s.pipeline}' (beta={s.beta:g}, held-out "
                        f"prompts={s.heldout_prompts}, {s.heldout_samples_per_prompt} samples each)")
    table.add_column("metric")
    table.add_column("pi_ref", justify="right")
    table.add_column("pi_BOLT", justify="right")
    table.add_row("accuracy, temperature 1", f"{s.ref_accuracy:.3f}", f"{s.policy_accuracy:.3f}")
    table.add_row("accuracy, greedy", f"{s.ref_accuracy_greedy:.3f}", f"{s.policy_accuracy_greedy:.3f}")
    table.add_row("pass@8", f"{s.ref_pass_at_8:.3f}", f"{s.policy_pass_at_8:.3f}")
    table.add_row("KL(pi || pi_ref)", "0", f"{s.kl:.4f}")
    table.add_row("J = reward - beta*KL", f"{s.ref_objective_j:.4f}", f"{s.objective_j:.4f}")
    table.add_row("target accuracy p*", "", f"{s.target_accuracy:.3f}")
    table.add_row("mean |p_theta - p*|", "",
                  f"{s.target_error:.4f} (noise floor {s.target_error_noise_floor:.4f})")
    console.print(table)
    console.print(
        f"gain {100 * s.accuracy_gain:+.1f} points (SE {_number(s.accuracy_gain_se, 2, 100)}); "
        f"training prompts: mean ESS/N {s.mean_ess_fraction:.3f}, coverage {s.coverage:.3f}, "
        f"informative {s.informative_share:.3f}",
        markup=False,
    )
    console.print(
        f"pi_ref per-prompt success rates: {100 * s.ref_share_below_0_3:.1f}% of prompts below 0.3, "
        f"{100 * s.ref_share_above_0_6:.1f}% above 0.6, "
        + ("expected unsolved in 32 samples: n/a (fewer samples per prompt)"
           if s.ref_share_unsolved_in_32 is None
           else f"{100 * s.ref_share_unsolved_in_32:.1f}% expected unsolved in 32 samples"),
        markup=False,
    )
    if s.verifier_errors or s.heldout_verifier_errors:
        errors.print(
            f"verifier errors: {s.verifier_errors} of {s.rollouts} training responses and "
            f"{s.heldout_verifier_errors} held-out ones could not be scored (each is in the table's "
            "`error` column and counts as a failure)", markup=False)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in s.stage_seconds.model_dump().items())
    console.print(f"stage compute time: {stages}", markup=False)
    console.print(f"this invocation: {seconds:.1f}s wall-clock (cached stages are not re-run)")
    console.print(f"tables: {s.round_dir}", markup=False)
    console.print(f"MLflow run {s.mlflow_run_id} in {s.tracking_uri}", markup=False)
    print_browse(s, runs_root)


def print_browse(s: RoundSummary, runs_root) -> None:
    """Where to see the round's run: a tracking server is already up; a store in a file needs
    `bolt ui` (mlflow ui on it, port 5000) first."""
    serve = "" if is_tracking_server(s.tracking_uri) else f"bolt ui --runs-dir {runs_root}, then "
    console.print(f"browse: {serve}{s.mlflow_run_page}", markup=False, soft_wrap=True)


def print_refresh(result: RefreshResult, seconds: float, runs_root) -> None:
    rounds = result.rounds
    table = Table(title=f"refreshed rounds of '{rounds[0].pipeline}'")
    for column in ("round", "sampler", "coverage", "ESS/N", "accuracy", "target p*", "KL", "KL(pi*||pi)"):
        table.add_column(column, justify="right")
    for s in rounds:
        table.add_row(str(s.round), Path(s.sampler).name, f"{s.coverage:.3f}",
                      f"{s.mean_ess_fraction:.3f}", f"{s.policy_accuracy:.3f}",
                      f"{s.target_accuracy:.3f}", f"{s.kl:.3f}", f"{s.projection_gap:.3f}")
    console.print(table)
    console.print(f"pi_ref accuracy {rounds[0].ref_accuracy:.3f}; {seconds:.1f}s wall-clock; "
                  f"plot {result.plot}; MLflow parent run {result.parent_run_id}", markup=False)
    print_browse(rounds[-1], runs_root)


def print_report(result: AnalysisResult) -> None:
    report = Path(result.report).read_text()
    console.print(Markdown(report.split("## Configuration")[0]))
    console.print(f"report: {result.report}", markup=False)
    console.print(f"plots: {', '.join(result.plots)}", markup=False)
    console.print(f"MLflow run: {result.mlflow_run_id}")
