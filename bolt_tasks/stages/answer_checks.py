"""Final answers of worked solutions, and the verifiers that compare them.

- gsm8k: the number after '####' in a solution; a response's last number.
- boxed: the last \\boxed{...} (MATH style).
- math, math_lenient: stages/math_answers.py.
- reasoning_gym: the generator's own score_answer on the entry the prompt came from.

Imported by the verifier workers: nothing heavy at import time.
"""

from __future__ import annotations

import json
import re

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def gsm8k_final(solution: str) -> str | None:
    """'... #### 1,234' -> '1234' (commas dropped); None without '####'."""
    if "####" not in solution:
        return None
    value = solution.rsplit("####", 1)[1].strip().replace(",", "").replace("$", "")
    return value or None


def boxed_final(solution: str) -> str | None:
    """The content of the last \\boxed{...}, braces balanced; None without one."""
    start = solution.rfind("\\boxed{")
    if start < 0:
        return None
    depth, position = 0, start + len("\\boxed{")
    for index in range(position, len(solution)):
        if solution[index] == "{":
            depth += 1
        elif solution[index] == "}":
            if depth == 0:
                return solution[position:index].strip() or None
            depth -= 1
    return None


def extract_answer(solution: str, answer_format: str) -> str | None:
    """The final value of a reference solution under answer_format (plain, gsm8k, boxed, auto)."""
    if answer_format == "plain":
        return solution.strip() or None
    if answer_format == "gsm8k":
        return gsm8k_final(solution)
    if answer_format == "boxed":
        return boxed_final(solution)
    return gsm8k_final(solution) or boxed_final(solution) or (solution.strip() or None)


def _last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def gsm8k_verifier(prompt: str, answer: str, response: str, finish_reason: str) -> float:
    """1 iff the response's final number ('#### N' if it writes one, else its last number)
    equals the answer's, as numbers."""
    given = gsm8k_final(response) or _last_number(response)
    expected = gsm8k_final(answer) or _last_number(answer)
    if given is None or expected is None:
        return 0.0
    try:
        return float(abs(float(given) - float(expected)) < 1e-9)
    except ValueError:
        return float(given == expected)


_SCORERS: dict[str, object] = {}


def reasoning_gym_verifier(prompt, answer, response, finish_reason, metadata) -> float:
    """The generator's score_answer on the prompt's entry (stored in the prompts' metadata),
    given the response's <answer>...</answer> if it has one, else the whole response."""
    import reasoning_gym
    from reasoning_gym.utils import extract_answer as tagged_answer

    stored = json.loads(metadata or "{}")
    if "dataset" not in stored:
        raise ValueError("the reasoning_gym verifier needs prompts from task.source=reasoning_gym:NAME")
    name = stored["dataset"]
    if name not in _SCORERS:
        _SCORERS[name] = reasoning_gym.get_score_answer_fn(name)
    return float(_SCORERS[name](tagged_answer(response) or response, stored["entry"]))


reasoning_gym_verifier.wants_metadata = True
