"""The math verifiers: math-verify's parse and symbolic comparison (\\frac12 = 0.5, 1,000 = 1000).

- math (strict, the default): only an answer the response states counts. math-verify extracts
  it as TRL's and open-r1's accuracy rewards do: the reference answer parsed first, then the
  response with anchored LaTeX and plain-expression extraction (try_extract_without_anchor=False,
  \\boxed{} first), so only a \\boxed{} or a value after an answer anchor ("the answer is",
  "final answer:", "answer:", GSM8K's "####") is read. For a numeric reference answer the
  stated answer must be a value: a number (1,000, -4, 0.5) or a fraction in lowest terms, not an
  unevaluated expression ("0 - 4", "6 + 3", "6/3") unless its value follows it ("8 - 0 = 8",
  "7 - 0, which is 7"); two values offered as alternatives ("5 or 6") are no answer.
- math_lenient: math-verify's default parse of the whole response, which falls back to its last
  expression anywhere. Gameable: "To find the value of 0 - 4, we need to" scores 1 for the
  answer -4, because it evaluates the restated question. Kept for comparison with runs judged
  that way.

math-verify's own timeouts use signal.alarm, which fails off the main thread, so they are off
here and the verifier worker pool enforces the time limit. Nothing heavy at import time: the
verifier workers import this module.
"""

from __future__ import annotations

import math
import re

_INTEGER_OR_DECIMAL = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_FRACTION = re.compile(r"(-?)(?:\\[dt]?frac\{(-?\d+)\}\{(\d+)\}|(-?\d+)/(\d+))")
# "the answer is 5 or 6", "answer: 3, 4": alternatives after an answer anchor, in one sentence.
_ALTERNATIVES = re.compile(
    r"(?i)\banswer\b[^.\n]{0,60}?(?<![\d,.])-?\d+(?:[.,]\d+)*(?:\s+(?:or|and)\s+|\s*[,;]\s+)"
    r"(?:maybe\s+|perhaps\s+|possibly\s+)?\$?-?\d")  # "1,000" is one number: a list needs a space


def _strict_extraction():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig
    from math_verify.parser import NormalizationConfig

    return [
        LatexExtractionConfig(
            boxed_match_priority=0, try_extract_without_anchor=False,
            normalization_config=NormalizationConfig(basic_latex=True, units=True,
                                                     malformed_operators=False, nits=False,
                                                     boxed="all")),
        ExprExtractionConfig(try_extract_without_anchor=False),
    ]


def parse_reference(answer: str, extraction_mode: str = "first_match") -> list:
    """math-verify's reading of a reference answer; a bare one (\\frac12, 1,000) is read as the
    LaTeX it is."""
    from math_verify import parse

    gold = (parse(answer, extraction_mode=extraction_mode, parsing_timeout=None)
            or parse(f"${answer}$", extraction_mode=extraction_mode, parsing_timeout=None))
    if not gold:
        raise ValueError(f"math-verify cannot parse the reference answer {answer!r}")
    return gold


def is_stated_value(text: str) -> bool:
    """Whether an extracted answer is a value rather than an expression still to evaluate: an
    integer or decimal (thousands commas allowed) or a fraction of integers in lowest terms."""
    text = text.strip().rstrip(".").replace("\\$", "").replace("$", "").replace(" ", "")
    if _INTEGER_OR_DECIMAL.fullmatch(text):
        return True
    fraction = _FRACTION.fullmatch(text)
    if fraction is None:
        return False
    numerator = int(fraction.group(2) or fraction.group(4))
    denominator = int(fraction.group(3) or fraction.group(5))
    return denominator > 1 and math.gcd(numerator, denominator) == 1


_GSM8K_MARKER = re.compile(r"####\s*")
# "the final answer is 8 - 0 = 8", "7 - 0, which is 7": a worked expression, then its value.
_EVALUATED = re.compile(r"\s*(?:=|,?\s*(?:which\s+)?(?:is|equals|gives)\b)\s*\$?\s*"
                        r"(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)")


def _value_after(text: str, expression: str) -> str | None:
    """The value a response gives right after the expression it stated, if it gives one."""
    start = text.rfind(expression.strip().rstrip("."))
    if start < 0:
        return None
    evaluated = _EVALUATED.match(text, start + len(expression.strip().rstrip(".")))
    return evaluated.group(1).rstrip(".,") if evaluated else None


def _is_number(expression) -> bool:
    import sympy

    return isinstance(expression, sympy.Number)


def math_verifier(prompt: str, answer: str, response: str, finish_reason: str) -> float:
    """1 iff the response states an answer (a \\boxed{} or a value after an answer anchor) that
    math-verify finds equivalent to the reference answer; for a numeric reference, the stated
    answer must be a value, not an expression such as the restated question."""
    from math_verify import parse, verify

    gold = parse_reference(answer)
    # Markdown bold hides an answer from the anchors; GSM8K's '#### 72' is an answer anchor.
    text = _GSM8K_MARKER.sub("The final answer is ", response.replace("**", ""))
    stated = parse(text, extraction_config=_strict_extraction(), extraction_mode="first_match",
                   parsing_timeout=None)
    if not stated or _ALTERNATIVES.search(text):
        return 0.0
    if _is_number(gold[0]) and not (isinstance(stated[-1], str) and is_stated_value(stated[-1])):
        value = _value_after(text, stated[-1]) if isinstance(stated[-1], str) else None
        if value is None or not is_stated_value(value):
            return 0.0
        stated = parse(f"${value}$", parsing_timeout=None)
    return float(verify(gold, stated, timeout_seconds=None))


def math_lenient_verifier(prompt: str, answer: str, response: str, finish_reason: str) -> float:
    """1 iff math-verify's default parse (a \\boxed{}, else the last expression anywhere in the
    response) is equivalent to the reference answer. Gameable: a restated question counts."""
    from math_verify import parse, verify

    gold = parse_reference(answer, extraction_mode="any_match")  # math-verify's default
    return float(verify(gold, parse(response, parsing_timeout=None), timeout_seconds=None))
