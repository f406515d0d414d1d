"""A verifier worker process: `python -m bolt_tasks.stages.verifier_worker MODULE:FUNCTION`.

Reads one JSON request per line on stdin, [index, prompt, answer, response, finish_reason,
metadata],
and answers each with one JSON line, [index, reward or null, error or null]. It first answers
["ready"] once the verifier is imported. Whatever the verifier prints goes to stderr, so it
cannot corrupt the answers.
"""

from __future__ import annotations

import json
import os
import sys

from bolt_tasks.core.processes import die_with_parent
from bolt_tasks.stages.verifier_registry import call_verifier, resolve_verifier


def main(name: str) -> None:
    die_with_parent()
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the verifier's prints, and any library's, go to stderr
    sys.stdout = sys.stderr
    verifier = resolve_verifier(name)
    answers.write('["ready"]\n')
    for line in sys.stdin:
        index, *item = json.loads(line)
        reward, error = call_verifier(verifier, *item)
        answers.write(json.dumps([index, reward, error]) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
