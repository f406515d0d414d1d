"""What checking a cache hit costs: the record read and the check that every file its result
names is intact (core/caching.py, core/intact.py), stage by stage on a finished default round,
and on one 10M-row table.

Two paths, measured apart:
  - stamps: nothing touched the files since the stage wrote them; a stat per file.
  - digests: every file's mtime moved (a copy that did not keep mtimes), so every file is hashed
    again once, after which the record holds the new stamps and the next hit is on the first path.
Each figure is the best of --repeats runs. The 10M-row table has the rollouts table's key and
weight columns (prompt_id, sample_idx, reward, weight), written with pyarrow's defaults.

    python bench/cache_check.py --runs-dir runs [--repeats 5] [--rows 10000000] [--out docs/bench/cache_check.json]

--runs-dir is a runs directory whose default pipeline finished round 0 with this code (the
README's `bolt run`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bolt_tasks.core.intact import intact
from bolt_tasks.core.storage import ModelRef, TableRef, write_table_atomic
from provenance import provenance


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def named_files(result) -> list[Path]:
    if isinstance(result, TableRef):
        return [Path(result.path)]
    if isinstance(result, ModelRef):
        return [Path(result.path) / stamp.name for stamp in result.files]
    if isinstance(result, (tuple, list)):
        return [path for item in result for path in named_files(item)]
    return []


def label(result) -> str:
    """What a record's result names: its tables' and folders' names, else its type."""
    if isinstance(result, TableRef):
        return Path(result.path).name
    if isinstance(result, ModelRef):
        return Path(result.path).name + "/"
    if isinstance(result, (tuple, list)):
        return " + ".join(label(item) for item in result)
    return NO_FILE.get(type(result).__name__, type(result).__name__)


# The stages whose results name no file: MLflow logging and the round's summary.
NO_FILE = {"NoneType": "no file (the training curve's MLflow logging)",
           "str": "no file (the round's MLflow logging: a run id)",
           "RoundSummary": "no file (the round's summary)"}


def touch(paths: list[Path]) -> None:
    for path in paths:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def stage_costs(runs: Path, repeats: int) -> list[dict]:
    from prefect.results import ResultRecord

    records = sorted((runs / "default" / "round-0" / ".prefect-cache").iterdir())
    records += sorted((runs / "reference" / ".prefect-cache").iterdir())
    rows = []
    for record in records:
        # the record's result with its files' stamps as they are now, as a hit leaves the record
        result = intact(ResultRecord.deserialize(record.read_bytes()).result)
        files = named_files(result)
        name = label(result)
        read = best_of(repeats, lambda: ResultRecord.deserialize(record.read_bytes()))
        stamps = best_of(repeats, lambda: intact(result))

        def after_touch():
            touch(files)
            intact(result)

        digests = best_of(repeats, after_touch) if files else stamps
        rows.append({"record": record.name, "result": name, "files": len(files),
                     "bytes": sum(f.stat().st_size for f in files), "read_seconds": read,
                     "stamps_seconds": stamps, "digests_seconds": digests})
    return rows


def large_table(rows: int, repeats: int, directory: Path) -> dict:
    rng = np.random.default_rng(0)
    table = pa.table({
        "prompt_id": pa.array([f"train-{i // 8}" for i in range(rows)]),
        "sample_idx": pa.array(np.arange(rows, dtype=np.int32) % 8),
        "reward": pa.array(rng.random(rows)), "weight": pa.array(rng.random(rows)),
    })
    start = time.perf_counter()
    ref = write_table_atomic(table, directory / "large.parquet")
    written = time.perf_counter() - start
    stamps = best_of(repeats, lambda: intact(ref))

    def after_touch():
        touch([Path(ref.path)])
        intact(ref)

    return {"rows": rows, "bytes": ref.size, "write_and_digest_seconds": written,
            "stamps_seconds": stamps, "digests_seconds": best_of(repeats, after_touch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--out", default="docs/bench/cache_check.json")
    args = parser.parse_args()
    stages = stage_costs(Path(args.runs_dir).resolve(), args.repeats)
    with tempfile.TemporaryDirectory() as directory:
        large = large_table(args.rows, args.repeats, Path(directory))
    result = {"provenance": provenance(), "stages": stages, "large_table": large,
              "default_round": {key: sum(s[key] for s in stages)
                                for key in ("read_seconds", "stamps_seconds", "digests_seconds", "bytes")}}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"default_round": result["default_round"], "large_table": large}, indent=2))


if __name__ == "__main__":
    main()
