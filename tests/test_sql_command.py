"""`bolt sql`: the views of sql/views.sql over a runs directory, and its read-only guard.

The runs directory is written here with pyarrow (two pipelines x two rounds, tables with the
README's columns), never by running the pipeline.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bolt_cli.main import console, main
from bolt_cli.sql_shell import shell
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.readonly_sql import open_runs, run_query

SAMPLES = 2
# (pipeline, round) -> number of prompts; every prompt has SAMPLES rollouts.
PROMPTS = {("alpha", 0): 2, ("alpha", 1): 3, ("beta", 0): 4, ("beta", 1): 5}
STORED_ROUND_OFFSET = 100  # rollouts.round is stored off by 100: the views' round is the path's


def _write(path: Path, columns: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _reward(pipeline: str, round_index: int, prompt: int, sample: int) -> float:
    return float((prompt + sample + round_index + (pipeline == "beta")) % 2)


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for (pipeline, k), count in PROMPTS.items():
        directory = root / pipeline / f"round-{k}"
        ids = [f"add-{i}" for i in range(count)]
        _write(directory / "prompts.parquet", {
            "prompt_id": ids, "prompt": [f"{i}+{i}=" for i in range(count)],
            "answer": [str(2 * i) for i in range(count)], "split": ["train"] * count,
            "difficulty": pa.array([i % 3 for i in range(count)], pa.int32()),
        })
        keys = [(i, j) for i in range(count) for j in range(SAMPLES)]
        rewards = [_reward(pipeline, k, i, j) for i, j in keys]
        _write(directory / "rollouts.parquet", {
            "prompt_id": [ids[i] for i, _ in keys], "sample_idx": pa.array([j for _, j in keys], pa.int32()),
            "response": [str(2 * i + int(1 - r)) for (i, _), r in zip(keys, rewards)],
            "response_token_ids": pa.array([[4, 5, 2]] * len(keys), pa.list_(pa.int32())),
            "sampler_logprob": [-1.0 - j for _, j in keys], "reference_logprob": [-1.5 - j for _, j in keys],
            "num_tokens": pa.array([3] * len(keys), pa.int32()), "finish_reason": ["stop"] * len(keys),
            "sampler_model": ["reference/embedded-test"] * len(keys),
            "round": pa.array([k + STORED_ROUND_OFFSET] * len(keys), pa.int32()),
        })
        _write(directory / "rewards.parquet", {
            "prompt_id": [ids[i] for i, _ in keys], "sample_idx": pa.array([j for _, j in keys], pa.int32()),
            "reward": rewards, "verifier": ["arithmetic"] * len(keys),
            "error": pa.nulls(len(keys), pa.string()),
        })
        stats = {
            "prompt_id": ids, "n": [SAMPLES] * count, "mean_reward": [0.5] * count, "log_z": [0.1] * count,
            "ess": [1.5] * count, "ess_fraction": [0.75] * count, "covered": [True] * count,
        }
        if pipeline == "beta":
            stats["support_mass"] = [0.9] * count  # a newer column: union_by_name fills NULL elsewhere
        _write(directory / "prompt_stats.parquet", stats)
        _write(directory / "eval.parquet", {
            "prompt_id": ids, "reference_success_rate": [0.25] * count, "policy_success_rate": [0.5] * count,
        })
        if pipeline == "alpha":  # beta never got as far as weights; no pipeline wrote train_log
            _write(directory / "weights.parquet", {
                "prompt_id": [ids[i] for i, _ in keys],
                "sample_idx": pa.array([j for _, j in keys], pa.int32()),
                "reward": rewards, "log_weight": [0.0] * len(keys), "weight": [1.0] * len(keys),
            })
    model = root / "reference" / "embedded-test"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (root / "mlflow.db").write_bytes(b"")
    return root


def _snapshot(tmp_path: Path) -> dict[str, str]:
    """sha256 of every file under tmp_path: the runs directory and anything a query could add."""
    return {str(path.relative_to(tmp_path)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(tmp_path.rglob("*")) if path.is_file()}


def test_count_through_the_cli_and_run_query(runs, capsys):
    total = SAMPLES * sum(PROMPTS.values())
    assert run_query(open_runs(runs), "SELECT count(*) AS n FROM rollouts").to_pylist() == [{"n": total}]

    assert main(["sql", "SELECT count(*) AS n FROM rollouts", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"│\s+{total}\s+│", out), out
    assert "1 row" in out


def test_pipeline_and_round_come_from_the_path(runs):
    connection = open_runs(runs)
    counts = "SELECT pipeline, round, count(*) AS n FROM {} GROUP BY ALL ORDER BY ALL"
    rows = run_query(connection, counts.format("rollouts")).to_pylist()
    assert rows == [{"pipeline": p, "round": k, "n": SAMPLES * n} for (p, k), n in sorted(PROMPTS.items())]

    for view in ("prompts", "rollouts", "rewards", "weights", "prompt_stats", "evals"):
        columns = run_query(connection, f"DESCRIBE {view}").select(["column_name", "column_type"]).to_pylist()
        names = [column["column_name"] for column in columns]
        assert names[:2] == ["pipeline", "round"], view
        assert names.count("round") == 1 and "filename" not in names, view
        assert [column["column_type"] for column in columns[:2]] == ["VARCHAR", "INTEGER"], view
    rows = run_query(connection, counts.format("prompts")).to_pylist()
    assert rows == [{"pipeline": p, "round": k, "n": n} for (p, k), n in sorted(PROMPTS.items())]
    # A column only some files have reads as NULL in the others.
    mass = run_query(connection, "SELECT pipeline, count(support_mass) AS n FROM prompt_stats GROUP BY ALL "
                                 "ORDER BY ALL")
    assert mass.to_pylist() == [{"pipeline": "alpha", "n": 0}, {"pipeline": "beta", "n": 4 + 5}]


def test_join_across_views(runs):
    result = run_query(open_runs(runs), """
        SELECT pipeline, round, sum(reward) AS correct,
               count(*) FILTER (WHERE ro.response = p.answer) AS matches
        FROM rollouts ro
        JOIN rewards USING (pipeline, round, prompt_id, sample_idx)
        JOIN prompts p USING (pipeline, round, prompt_id)
        GROUP BY ALL ORDER BY ALL
    """)
    expected = []
    for (pipeline, k), count in sorted(PROMPTS.items()):
        correct = sum(_reward(pipeline, k, i, j) for i in range(count) for j in range(SAMPLES))
        expected.append({"pipeline": pipeline, "round": k, "correct": correct, "matches": int(correct)})
    assert result.to_pylist() == expected


def test_tables_never_written_have_no_view(runs, tmp_path):
    connection = open_runs(runs)
    views = set(run_query(connection, "SHOW TABLES").column("name").to_pylist())
    assert {"prompts", "rollouts", "rewards", "weights", "prompt_stats", "evals"} <= views
    assert "train_log" not in views and "policy_eval" not in views
    weights = run_query(connection, "SELECT DISTINCT pipeline FROM weights")
    assert weights.to_pylist() == [{"pipeline": "alpha"}]

    empty = tmp_path / "empty-runs"
    (empty / "reference" / "embedded-test").mkdir(parents=True)
    with pytest.raises(BoltInputError, match="no tables found"):
        open_runs(empty)
    with pytest.raises(BoltInputError, match="no such runs directory"):
        open_runs(tmp_path / "missing")


REFUSED = {
    "INSERT": "INSERT INTO rollouts SELECT * FROM rollouts",
    "DELETE": "DELETE FROM rollouts",
    "DROP": "DROP VIEW rollouts",
    "CREATE": "CREATE TABLE copied AS SELECT * FROM rollouts",
    "COPY": "COPY (SELECT 1) TO '{out}'",
    "COPY onto a table": "COPY (SELECT * FROM rewards) TO '{runs}/alpha/round-0/rollouts.parquet' "
                         "(FORMAT parquet)",
    "ATTACH": "ATTACH '{runs}/extra.db'",
    "SELECT then DELETE": "SELECT count(*) FROM rollouts; DELETE FROM rollouts",
    "DELETE inside a SELECT": "WITH gone AS (DELETE FROM rollouts RETURNING *) SELECT count(*) FROM gone",
    "EXPLAIN ANALYZE COPY": "EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'",
    "INSTALL": "INSTALL httpfs",
    "SET": "SET enable_external_access = true",
    "PRAGMA": "PRAGMA version",
    "EXPORT": "EXPORT DATABASE '{tmp}/exported'",
}
REFUSED_TYPE = {"COPY onto a table": "COPY", "SELECT then DELETE": "DELETE",
                "DELETE inside a SELECT": "DELETE", "EXPLAIN ANALYZE COPY": "EXPLAIN of COPY"}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_writes_are_refused_and_change_no_file(runs, tmp_path, capsys, case):
    sql = REFUSED[case].format(out=tmp_path / "out.csv", runs=runs.as_posix(), tmp=tmp_path.as_posix())
    refused = f"bolt sql is read-only: refused {REFUSED_TYPE.get(case, case)}"
    before = _snapshot(tmp_path)
    connection = open_runs(runs)

    with pytest.raises(BoltInputError) as error:
        run_query(connection, sql)
    assert str(error.value).startswith(refused), str(error.value)

    assert main(["sql", sql, "--runs-dir", str(runs)]) == 2
    assert refused in capsys.readouterr().err

    assert _snapshot(tmp_path) == before  # every Parquet file byte-identical, no new file
    total = SAMPLES * sum(PROMPTS.values())
    assert run_query(connection, "SELECT count(*) AS n FROM rollouts").to_pylist() == [{"n": total}]


def test_the_connection_is_locked_to_the_runs_directory(runs, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    connection = open_runs(runs)
    with pytest.raises(BoltInputError, match="disabled by configuration"):
        run_query(connection, f"SELECT * FROM read_csv('{outside.as_posix()}')")
    # Even a caller that skips run_query cannot lift the limits.
    with pytest.raises(duckdb.Error, match="locked"):
        connection.execute("SET enable_external_access = true")
    # Read-only statements other than SELECT work.
    assert run_query(connection, "SUMMARIZE SELECT reward FROM rewards").num_rows == 1
    assert run_query(connection, "EXPLAIN SELECT count(*) FROM rollouts").num_rows == 1


def test_prompt_and_usage(runs, monkeypatch, capsys):
    lines = iter(["SELECT count(*) AS n FROM prompts", "DELETE FROM prompts", "SELECT nope", ".quit",
                  "never read"])
    assert shell(open_runs(runs), console, read=lambda _: next(lines)) == 0
    out = capsys.readouterr().out
    assert re.search(rf"│\s+{sum(PROMPTS.values())}\s+│", out), out
    assert "bolt sql is read-only: refused DELETE" in out and "nope" in out
    assert next(lines) == "never read"

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: print how to use it
    assert main(["sql", "--runs-dir", str(runs)]) == 2
    out = capsys.readouterr().out
    assert "bolt sql \"SELECT" in out and "duckdb -init" in out and "views.sql" in out
