"""The answer verifiers on tricky responses (tests/verifier_cases.py), judged as a round judges
them: through the verifier pool for math and math_lenient, in the scoring process for gsm8k.
The docs' table (docs/guide/verifiers.md) is rendered from the same cases."""

import json
from pathlib import Path

import pytest

from bolt_tasks.core.config import TaskConfig
from bolt_tasks.stages.verifiers import score_responses
from verifier_cases import CASES, VERIFIERS

VERIFIERS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "verifiers.md"
BEST_RESPONSES = Path(__file__).resolve().parents[1] / "docs" / "bench" / "e4_real_best_responses.json"


def scored(verifier: str, items: list[tuple]) -> tuple[list[float], list]:
    task = TaskConfig(verifier=verifier, verifier_timeout_s=20, max_verifier_error_share=1.0)
    rewards, errors = score_responses(items, task, f"verify with {verifier}")
    return list(rewards), errors


# math and math_lenient score through a verifier pool, 4 s a case: slow.
@pytest.mark.parametrize("verifier", [pytest.param(v, marks=pytest.mark.slow) if v.startswith("math") else v
                                      for v in VERIFIERS])
def test_each_tricky_response_gets_the_tabled_reward(verifier):
    column = VERIFIERS.index(verifier)
    items = [("question", answer, response, "stop", None) for _, answer, response, _ in CASES]
    rewards, errors = scored(verifier, items)
    wrong = [(case, reward, expected[column])
             for (case, _, _, expected), reward in zip(CASES, rewards) if reward != expected[column]]
    assert errors == [None] * len(CASES) and not wrong, wrong


def test_a_reference_answer_math_verify_reads_only_as_text_matches_no_number():
    for verifier in ("math", "math_lenient"):
        assert scored(verifier, [("question", "%%%", "The answer is 72.", "stop", None)]) == ([0.0], [None])


@pytest.mark.slow
def test_restated_questions_from_the_real_model_race_score_nothing_under_math():
    """GRPO's greedy responses at its 1.000 (lenient) evaluation restate the question; the strict
    verifier gives every one 0, while stated answers score."""
    responses = json.loads(BEST_RESPONSES.read_text())["grpo"]
    items = [(r["prompt"], r["answer"], r["response"], "stop", None) for r in responses]
    assert len(items) == 79 and all(r["reward"] == 1.0 for r in responses)  # what lenient gave
    assert scored("math", items)[0] == [0.0] * 79
    assert scored("math_lenient", items)[0] == [1.0] * 79
    stated = [("q", "6", "The final answer is 6.", "stop", None), ("q", "6", r"\boxed{6}", "stop", None)]
    assert scored("math", stated)[0] == [1.0, 1.0]


def cases_table() -> str:
    header = "| case | reference | response | " + " | ".join(f"`{v}`" for v in VERIFIERS) + " |"
    rows = [header, "|" + " --- |" * (3 + len(VERIFIERS))]
    for case, answer, response, expected in CASES:
        shown = response.replace("\n", "\\n").replace("|", "\\|")
        rows.append(f"| {case} | `{answer}` | `{shown}` | " + " | ".join(str(e) for e in expected) + " |")
    return "\n".join(rows)


def test_the_docs_table_is_these_cases():
    table = cases_table()
    assert table in VERIFIERS_PAGE.read_text(), (
        "docs/guide/verifiers.md's verifier table differs; it should read:\n" + table)
