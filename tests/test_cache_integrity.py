""""Cached" means present and intact, through the real CLI: a damaged, deleted or moved result is
never reported as a finished stage. Each rerun exits 0, names every file it rebuilt, recomputes
exactly the stages whose files were damaged, and leaves every table bit-identical to a clean run
(a fixed fit thread count, as in test_cache_keys.py: the same bits on every CPU)."""

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from cli_runs import bolt, finished_states

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_prefect_server")]

TINY = ["--set", "reference.steps=40", "--set", "reference.batch_size=32",
        "--train-prompts", "16", "--set", "task.heldout_prompts=8",
        "--set", "evaluation.samples_per_prompt=8", "--samples-per-prompt", "2",
        "--set", "weighting.train_without_information=true"]
STAGES = ("prompts", "bootstrap-reference", "sample-rollouts", "score-rollouts", "weights",
          "weighted-sft", "evaluate-policy", "logprobs-of-samples", "compare-to-target",
          "summarize-round", "log-training-curve", "log-to-mlflow")
COUNTS = "SELECT (SELECT count(*) FROM rollouts) AS rollouts, (SELECT count(*) FROM evals) AS evals"


def run(runs: Path, pipeline: str = "tiny") -> str:
    result = bolt("run", "--runs-dir", str(runs), "--pipeline", pipeline, *TINY,
                  env={**os.environ, "BOLT_FIT_THREADS": "0"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def sql(runs: Path) -> str:
    result = bolt("sql", COUNTS, "--runs-dir", str(runs))
    assert result.returncode == 0, result.stderr
    return result.stdout


def files(round_dir: Path) -> dict[str, bytes]:
    """Every table and policy file of a round, by name."""
    return {str(path.relative_to(round_dir)): path.read_bytes()
            for path in sorted(round_dir.rglob("*")) if path.is_file()
            and (path.suffix == ".parquet" or path.parent.name == "policy")}


def states(output: str) -> dict[str, set[str]]:
    return {stage: set(finished_states(output, stage)) for stage in STAGES}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean run's runs directory, its round's files and its `bolt sql` counts."""
    runs = tmp_path_factory.mktemp("clean") / "runs"
    run(runs)
    return runs, files(runs / "tiny" / "round-0"), sql(runs)


def test_a_truncated_table_a_deleted_table_and_a_deleted_policy_are_rebuilt(clean, tmp_path):
    runs, clean_files, _ = clean
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)  # with mtimes, as cp -a or rsync -a copy
    round_dir = copy / "tiny" / "round-0"
    weights = round_dir / "weights.parquet"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (round_dir / "rollouts.parquet").unlink()
    shutil.rmtree(round_dir / "policy")

    output = run(copy)
    found = states(output)
    rebuilt = {"sample-rollouts", "weights", "weighted-sft"}
    assert all(found[stage] == {"Completed()"} for stage in rebuilt), found
    assert all(found[stage] == {"Cached(type=COMPLETED)"} for stage in set(STAGES) - rebuilt), found
    flat = " ".join(output.split())
    assert f"{round_dir / 'rollouts.parquet'} is missing; running the stage again" in flat
    assert f"{weights} changed since the stage wrote it" in flat
    assert f"{round_dir / 'policy'} is missing; running the stage again" in flat
    assert files(round_dir) == clean_files


def test_a_moved_runs_directory_keeps_every_stage_and_a_damaged_store_entry_is_evaluated_again(clean, tmp_path):
    runs, clean_files, counts = clean
    moved = tmp_path / "moved"
    os.rename(runs, moved)

    output = run(moved)
    assert states(output) == {stage: {"Cached(type=COMPLETED)"} for stage in STAGES}
    assert f"browse: bolt ui --runs-dir {moved}, then http://127.0.0.1:5000/#/experiments/" in output
    assert files(moved / "tiny" / "round-0") == clean_files
    assert sql(moved) == counts
    with sqlite3.connect(moved / "mlflow.db") as store:
        uris = [uri for (uri,) in store.execute("SELECT artifact_uri FROM runs")]
    assert uris and all(uri.startswith(f"file://{moved}/mlartifacts/") for uri in uris), uris
    plots = list((moved / "mlartifacts").rglob("success_rates.png"))
    assert plots, "the runs' artifacts lie under the moved directory"

    # A second pipeline on the same pi_ref and held-out set copies pi_ref's evaluation from the
    # store: with the entry's table cut in half, it evaluates again and restores the entry.
    entries = sorted((moved / "evaluations").iterdir())
    for entry in entries:
        table = entry / "eval.parquet"
        table.write_bytes(table.read_bytes()[:100])
    output = " ".join(run(moved, pipeline="tiny2").split())
    assert f"evaluation store entry {entries[0]}" in output or f"evaluation store entry {entries[1]}" in output
    assert "changed since it was stored" in output and "evaluating again" in output
    second = moved / "tiny2" / "round-0"
    assert (second / "reference_eval.parquet").read_bytes() == clean_files["reference_eval.parquet"]
