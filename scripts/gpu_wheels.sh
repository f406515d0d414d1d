#!/usr/bin/env bash
# The wheels bench/gpu_node_check.sh carries to a GPU machine without network: pydantic and DuckDB
# (and what pydantic needs) for CPython 3.12 on x86-64 Linux, at the versions installed in .venv,
# into .whl/ (about 27 MB). Run here, where PyPI is reachable; .whl/ is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
pins=$("$python" - <<'PY'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in
               ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "duckdb")))
PY
)
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$tag")
done
# shellcheck disable=SC2086  # one argument per pin
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl $pins
ls -l .whl
