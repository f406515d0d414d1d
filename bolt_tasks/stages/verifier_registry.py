"""Verifiers by name, and what counts as a reward.

A verifier is f(prompt, answer, response, finish_reason) -> reward; one that sets
`wants_metadata` also gets the prompt's metadata (a JSON string). The registry's simple
verifiers run in the scoring process; math, math_lenient and reasoning_gym, and a user's
'module:function', run in worker processes with a time limit (stages/verifier_pool.py), since
they may hang, crash or exit. This module imports nothing heavy: the workers import it too.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from collections.abc import Callable

from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.stages.answer_checks import gsm8k_verifier, reasoning_gym_verifier
from bolt_tasks.stages.math_answers import math_lenient_verifier, math_verifier

Verifier = Callable[[str, str, str, str], float]
MAX_ABS_REWARD = 1e6  # core/config.MAX_ABS_REWARD; kept here so the workers need no pydantic


def arithmetic_verifier(prompt: str, answer: str, response: str, finish_reason: str) -> float:
    """1 iff the text before EOS is exactly the answer and EOS was emitted."""
    return float(finish_reason == "stop" and response == answer)


def exact_match_verifier(prompt: str, answer: str, response: str, finish_reason: str) -> float:
    """1 iff the response equals the answer after trimming surrounding whitespace."""
    return float(response.strip() == answer.strip())


VERIFIERS: dict[str, Verifier] = {
    "arithmetic": arithmetic_verifier,
    "exact_match": exact_match_verifier,
    "gsm8k": gsm8k_verifier,
    "math": math_verifier,
    "math_lenient": math_lenient_verifier,
    "reasoning_gym": reasoning_gym_verifier,
}
# Registry verifiers that can hang or need a library's own state: run in the worker pool.
IN_WORKERS = {"math", "math_lenient", "reasoning_gym"}


def is_registered(name: str) -> bool:
    return name in VERIFIERS


def runs_inline(name: str) -> bool:
    """The registry's pure, quick verifiers run in the scoring process itself."""
    return name in VERIFIERS and name not in IN_WORKERS


def resolve_verifier(name: str) -> Verifier:
    """The callable a verifier name stands for, checked to take the four arguments."""
    if name in VERIFIERS:
        return VERIFIERS[name]
    if ":" not in name:
        raise BoltInputError(
            f"field 'task.verifier': unknown verifier {name!r}; known: {sorted(VERIFIERS)} "
            "or 'module:function'"
        )
    module_name, _, attribute = name.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except SyntaxError as error:
        raise BoltInputError(f"field 'task.verifier': {error.filename} line {error.lineno}: "
                             f"syntax error ({error.msg}) in the verifier's module") from None
    except (ImportError, AttributeError) as error:
        raise BoltInputError(f"field 'task.verifier': cannot import {name!r} ({error}); the module "
                             "must be importable (on PYTHONPATH or in the current directory)") from None
    except Exception as error:  # the module raised while being imported
        raise BoltInputError(f"field 'task.verifier': importing {module_name!r} raised "
                             f"{type(error).__name__}: {error}") from None
    if not callable(function):
        raise BoltInputError(f"field 'task.verifier': {name!r} is a {type(function).__name__}, "
                             "not a function")
    try:
        inspect.signature(function).bind("prompt", "answer", "response", "stop")
    except TypeError:
        raise BoltInputError(
            f"field 'task.verifier': {name}{inspect.signature(function)} cannot be called as "
            "f(prompt, answer, response, finish_reason)") from None
    except ValueError:  # no signature to inspect (a builtin): let the call decide
        pass
    return function


def as_reward(value) -> tuple[float | None, str | None]:
    """(reward, None) for a real number within +-MAX_ABS_REWARD (a bool counts as 0/1), else
    (None, what is wrong with it). A string such as "1" is not taken as a number."""
    if not isinstance(value, numbers.Real):
        return None, f"verifier returned {type(value).__name__} {value!r:.40}, not a number"
    reward = float(value)
    if not math.isfinite(reward):
        return None, f"verifier returned non-finite reward {reward}"
    if abs(reward) > MAX_ABS_REWARD:
        return None, f"verifier returned {reward:g}, outside [-{MAX_ABS_REWARD:g}, {MAX_ABS_REWARD:g}]"
    return reward, None


def call_verifier(verifier: Verifier, prompt, answer, response, finish_reason,
                  metadata: str | None = None) -> tuple[float | None, str | None]:
    """(reward, None) or (None, error text): any failure of the verifier is data, not a crash."""
    try:
        if getattr(verifier, "wants_metadata", False):
            value = verifier(prompt, answer, response, finish_reason, metadata)
        else:
            value = verifier(prompt, answer, response, finish_reason)
    except Exception as error:
        return None, f"{type(error).__name__}: {error}"
    return as_reward(value)
