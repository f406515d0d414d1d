"""Cache keys cannot go stale: a stage's key covers every module it reaches and every SQL file
those modules read, found from the code, and an edit anywhere in that reach re-runs the stage."""

import os
import shutil
from pathlib import Path

import pytest

from bolt_tasks.core.caching import code_sources
from bolt_tasks.core.imports import import_closure, sql_files_read
from cli_runs import bolt, finished_states

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage_module, reached", [
    # the loss lives in policy/logprobs.py
    ("bolt_tasks.policy.training", {"bolt_tasks.policy.logprobs", "bolt_tasks.policy.modeling"}),
    # the vLLM worker is reached through backends -> vllm_backend, never imported by rollouts
    ("bolt_tasks.sampling.rollouts", {"bolt_tasks.sampling.decode", "bolt_tasks.sampling.vllm_backend",
                                      "bolt_tasks.sampling.vllm_worker"}),
    ("bolt_tasks.stages.evaluation", {"bolt_tasks.sampling.decode", "bolt_tasks.policy.logprobs",
                                      "bolt_tasks.stages.verifiers"}),
    # the summary's held-out figures come from comparison.heldout_summary
    ("bolt_tasks.stages.summary", {"bolt_tasks.stages.comparison", "bolt_tasks.stages.weights"}),
    # a cached task's key is its *_stage module's closure: the plain function's module and on
    ("bolt_tasks.sampling.sample_stage", {"bolt_tasks.sampling.rollouts", "bolt_tasks.sampling.decode"}),
    ("bolt_tasks.stages.evaluation_stage", {"bolt_tasks.stages.evaluation", "bolt_tasks.policy.logprobs"}),
    ("bolt_tasks.stages.weights_stage", {"bolt_tasks.stages.weights", "bolt_tasks.core.duck"}),
])
def test_a_stage_reaches_the_modules_doing_its_work(stage_module, reached):
    assert reached <= set(import_closure(stage_module))


def test_the_combine_stage_hashes_every_sql_file_it_runs():
    sources = code_sources("bolt_tasks.stages.comparison")
    assert {"sql/validate_rewards.sql", "sql/log_tilt.sql", "sql/weights.sql", "sql/prompt_stats.sql",
            "sql/projection_gap.sql", "sql/target_macro.sql", "sql/eval.sql",
            "sql/eval_summary.sql", "sql/exact_sum_macro.sql"} <= set(sources)
    assert "bolt_tasks.stages.weights" in sources


def test_keys_are_not_wider_than_the_code():
    # The prompts stage neither trains nor samples: editing the loss or the sampler keeps it.
    prompts = set(code_sources("bolt_tasks.stages.prompts_stage"))
    assert not {"bolt_tasks.policy.logprobs", "bolt_tasks.sampling.decode", "sql/weights.sql"} & prompts
    assert "bolt_tasks.policy.logprobs" not in code_sources("bolt_tasks.stages.verifiers_stage")


def test_an_sql_file_named_by_a_variable_is_refused(tmp_path, monkeypatch):
    (tmp_path / "computed_sql_name.py").write_text(
        "from bolt_tasks.core.duck import sql_text\n\ndef run(name):\n    return sql_text(name)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"computed_sql_name.py line 4: sql_text\(\) needs"):
        sql_files_read("computed_sql_name")


TINY = ["--pipeline", "tiny", "--set", "reference.steps=40", "--set", "reference.batch_size=32",
        "--train-prompts", "16", "--set", "task.heldout_prompts=8",
        "--set", "evaluation.samples_per_prompt=8", "--samples-per-prompt", "2",
        "--set", "weighting.train_without_information=true"]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_editing_a_module_stages_reach_indirectly_reruns_only_those_stages(tmp_path):
    """In a copy of the project: neither rollouts.py nor evaluation.py imports vllm_backend.py
    (both get there through backends.py). Editing it re-runs the two stages that sample; the
    prompts stage, upstream, stays cached; they give the same tables again, so every stage after
    them stays cached too."""
    copy = tmp_path / "project"
    for package in ("bolt_tasks", "flows", "deployments", "bolt_cli"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "sql", copy / "bolt_sql", ignore=shutil.ignore_patterns("__pycache__"))
    runs = str(tmp_path / "runs")

    def run():
        # cwd first on sys.path (python -m): the copy shadows the installed project. A fixed
        # thread count: "the same tables again" means the same bits, which a thread count that
        # follows the machine's load does not give on every CPU (tests/same_rows.py).
        result = bolt("run", "--runs-dir", runs, *TINY, cwd=copy,
                      env={**os.environ, "BOLT_FIT_THREADS": "0"})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    first = run()
    assert finished_states(first, "sample-rollouts") == ["Completed()"]
    assert str(copy / "bolt_tasks") in run_module_path(copy)

    edited = copy / "bolt_tasks" / "sampling" / "vllm_backend.py"
    edited.write_text(edited.read_text() + "\n# an edit the sampling stage must notice\n")
    second = run()
    assert finished_states(second, "sample-rollouts") == ["Completed()"]
    assert set(finished_states(second, "evaluate-policy")) == {"Completed()"}
    assert finished_states(second, "prompts") == ["Cached(type=COMPLETED)"]
    for downstream in ("score-rollouts", "weights", "weighted-sft", "summarize-round"):
        assert set(finished_states(second, downstream)) == {"Cached(type=COMPLETED)"}, downstream

    third = run()  # nothing changed since: everything cached
    assert finished_states(third, "sample-rollouts") == ["Cached(type=COMPLETED)"]


def run_module_path(copy: Path) -> str:
    """Where `python -m` started in the copy imports bolt_tasks from."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "import bolt_tasks; print(bolt_tasks.__file__)"],
                          cwd=copy, capture_output=True, text=True, check=True).stdout
