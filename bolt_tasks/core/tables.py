"""The table registry: every Parquet table a round writes, with its schema, its view in `bolt sql`
and whether MLflow keeps a copy. The stages write through it, `bolt sql` and sql/views.sql
(`bolt views`) build their views from it, MLflow logging and the tests read its lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bolt_tasks.core.storage import TableRef, write_table_atomic

STRING, INT32, INT64, DOUBLE, BOOL = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
_DUCKDB_TYPES = {STRING: "VARCHAR", INT32: "INTEGER", INT64: "BIGINT", DOUBLE: "DOUBLE", BOOL: "BOOLEAN"}
KEY = [("prompt_id", STRING), ("sample_idx", INT32)]


@dataclass(frozen=True)
class TableSpec:
    name: str  # the file: <round dir>/<name>.parquet
    schema: pa.Schema
    description: str
    view: str | None = None  # its view over every pipeline and round in `bolt sql`
    mlflow: bool = False  # logged as an artifact of the round's MLflow run

    @property
    def file_name(self) -> str:
        return f"{self.name}.parquet"

    def conform(self, table: pa.Table) -> pa.Table:
        """The table with exactly this schema: same columns in the same order, types cast only
        where the cast is safe. Anything else is a bug in the stage that made the table."""
        if table.schema.equals(self.schema, check_metadata=False):
            return table
        if table.column_names != self.schema.names:
            raise ValueError(f"{self.file_name}: columns {table.column_names} differ from the "
                             f"registered schema {self.schema.names} (bolt_tasks/core/tables.py)")
        return table.cast(self.schema, safe=True)

    def write(self, table: pa.Table, path: str | Path) -> TableRef:
        return write_table_atomic(self.conform(table), path)

    def copy_from(self, connection, query: str, path: str | Path,
                  parameters: dict | None = None) -> None:
        """The rows of a DuckDB query written by DuckDB itself to `path`, cast to this schema: a
        table too large for memory never passes through Python. Not atomic: write to a path
        from storage.atomic_path."""
        columns = ", ".join(f'CAST("{field.name}" AS {_DUCKDB_TYPES[field.type]}) AS "{field.name}"'
                            for field in self.schema)
        literal = str(path).replace("'", "''")
        connection.execute(f"COPY (SELECT {columns} FROM ({query})) TO '{literal}' (FORMAT parquet)",
                           parameters)
        written = pq.read_schema(path)
        if [(f.name, f.type) for f in written] != [(f.name, f.type) for f in self.schema]:
            raise ValueError(f"{self.file_name}: DuckDB wrote {written}, not the registered "
                             f"schema {self.schema} (bolt_tasks/core/tables.py)")


def _spec(name: str, fields: list | pa.Schema, description: str, **options) -> TableSpec:
    return TableSpec(name, pa.schema(fields), description, **options)


PROMPTS = _spec("prompts", [
    ("prompt_id", STRING), ("prompt", STRING), ("answer", STRING), ("split", STRING),
    ("difficulty", INT32), ("messages", STRING), ("metadata", STRING)],
    "training and held-out prompts of the round (split = train | heldout); messages: a chat-format "
    "row's turns (JSON), metadata: what a source's own verifier needs (JSON)",
    view="prompts", mlflow=True)
ROLLOUTS = _spec("rollouts", KEY + [
    ("prompt_text", STRING), ("prompt_token_ids", pa.list_(INT32)), ("response", STRING), ("response_token_ids", pa.list_(INT32)), ("sampler_logprob", DOUBLE),
    ("reference_logprob", DOUBLE), ("num_tokens", INT32), ("finish_reason", STRING),
    ("sampler_model", STRING), ("round", INT32)],
    "N responses per training prompt with log q (sampler) and log pi_ref, summed over the "
    "response tokens; prompt_text and prompt_token_ids are exactly what the policy was given",
    view="rollouts", mlflow=True)
REWARDS = _spec("rewards", KEY + [
    ("reward", DOUBLE), ("verifier", STRING), ("error", STRING)],
    "the verifier's reward of each rollout, and its error if it failed", view="rewards", mlflow=True)
WEIGHTS = _spec("weights", KEY + [
    ("reward", DOUBLE), ("log_weight", DOUBLE), ("weight", DOUBLE), ("kept", BOOL)],
    "the weighting scheme's weight of each rollout, and whether it is trained on (a "
    "zero-information group's rows are kept with probability weighting.zero_information_keep; "
    "sql/weights.sql)", view="weights", mlflow=True)
PROMPT_STATS = _spec("prompt_stats", [
    ("prompt_id", STRING), ("n", INT64), ("mean_reward", DOUBLE), ("log_z", DOUBLE), ("ess", DOUBLE),
    ("ess_fraction", DOUBLE), ("covered", BOOL), ("rewarded", INT64), ("informative", BOOL),
    ("target_success", DOUBLE),
    ("distinct_responses", INT64), ("log_support_mass", DOUBLE), ("support_mass", DOUBLE),
    ("support_price", DOUBLE)],
    "per training prompt: log Zhat, ESS, coverage, stored-support mass and price "
    "(sql/prompt_stats.sql)", view="prompt_stats", mlflow=True)
TRAIN_LOG = _spec("train_log", [
    ("step", INT32), ("epoch", INT32), ("loss", DOUBLE), ("grad_norm", DOUBLE),
    ("learning_rate", DOUBLE), ("rank_balance", DOUBLE)],
    "weighted-SFT loss, gradient norm, learning rate and the training processes' balance (the "
    "busiest one's token positions over the mean) by optimizer step", view="train_log", mlflow=True)
HELDOUT_EVAL_SCHEMA = pa.schema([
    ("prompt_id", STRING), ("difficulty", INT32), ("samples", INT32), ("success_rate", DOUBLE),
    ("mean_reward", DOUBLE), ("greedy_success", DOUBLE), ("pass_at_8", DOUBLE),
    ("pass_at_32", DOUBLE), ("mean_log_ratio", DOUBLE), ("verifier_errors", INT32)])
REFERENCE_EVAL = _spec("reference_eval", HELDOUT_EVAL_SCHEMA,
                       "pi_ref per held-out prompt", view="reference_eval")
POLICY_EVAL = _spec("policy_eval", HELDOUT_EVAL_SCHEMA,
                    "the fitted policy per held-out prompt", view="policy_eval")
EVAL_SAMPLES_SCHEMA = pa.schema(KEY + [
    ("prompt_token_ids", pa.list_(INT32)), ("response_token_ids", pa.list_(INT32)), ("sampler_logprob", DOUBLE),
    ("reference_logprob", DOUBLE), ("reward", DOUBLE), ("error", STRING)])
REFERENCE_SAMPLES = _spec("reference_samples", EVAL_SAMPLES_SCHEMA,
                          "pi_ref's temperature-1 samples of the held-out prompts",
                          view="reference_samples")
POLICY_SAMPLES = _spec("policy_samples", EVAL_SAMPLES_SCHEMA,
                       "the fitted policy's temperature-1 samples of the held-out prompts",
                       view="policy_samples")
SAMPLE_LOGPROBS_SCHEMA = pa.schema(KEY + [("policy_logprob", DOUBLE)])
REFERENCE_SAMPLES_POLICY_LOGPROBS = _spec(
    "reference_samples_policy_logprobs", SAMPLE_LOGPROBS_SCHEMA,
    "log pi_theta of pi_ref's held-out samples (the projection gap's importance sample)")
EVAL = _spec("eval", [
    ("prompt_id", STRING), ("difficulty", INT32), ("samples", INT32),
    ("reference_success_rate", DOUBLE), ("policy_success_rate", DOUBLE),
    ("reference_greedy_success", DOUBLE), ("policy_greedy_success", DOUBLE),
    ("reference_mean_reward", DOUBLE), ("policy_mean_reward", DOUBLE),
    ("reference_pass_at_8", DOUBLE), ("policy_pass_at_8", DOUBLE), ("reference_pass_at_32", DOUBLE),
    ("policy_kl", DOUBLE), ("target_success_rate", DOUBLE), ("target_error", DOUBLE),
    ("projection_gap", DOUBLE), ("reference_verifier_errors", INT32),
    ("policy_verifier_errors", INT32)],
    "the held-out evaluation, pi_ref beside the fitted policy, with p* and KL(pi*||pi_theta) "
    "(sql/eval.sql)", view="evals", mlflow=True)
# E1 (bolt experiment e1) writes these beside the round's tables and in its fits/<fit>/.
ANSWER_PROBABILITY_SCHEMA = pa.schema([
    ("prompt_id", STRING), ("split", STRING), ("answer_logprob", DOUBLE),
    ("answer_probability", DOUBLE)])
REFERENCE_ANSWER_PROBABILITY = _spec("reference_answer_probability", ANSWER_PROBABILITY_SCHEMA,
                                     "E1: pi_ref(answer + EOS | x) for every prompt")
ANSWER_PROBABILITY = _spec("answer_probability", ANSWER_PROBABILITY_SCHEMA,
                           "E1: a fit's pi_theta(answer + EOS | x) for every prompt")
REPLAY_ROLLOUTS = _spec("replay_rollouts", ROLLOUTS.schema,
                        "a replaying round's pool: its own rollouts and the earlier rounds' on its "
                        "prompts; `round` names the sampler, sample_idx = round * stride + the "
                        "round's own (stages/replay.py)")
REPLAY_REWARDS = _spec("replay_rewards", REWARDS.schema, "the rewards of replay_rollouts")
REPLAY_LOGPROBS = _spec("replay_logprobs", KEY + [("round", INT32), ("logprob", DOUBLE)],
                        "log q_round of every replay_rollouts response, under every sampler of "
                        "the pool (sql/replay_tilt.sql's mixture)")
TRAIN_LOGPROBS = _spec("train_logprobs", SAMPLE_LOGPROBS_SCHEMA,
                       "E1: a fit's log pi_theta of the training rollouts")
HELDOUT_LOGPROBS = _spec("heldout_logprobs", SAMPLE_LOGPROBS_SCHEMA,
                         "E1: a fit's log pi_theta of pi_ref's held-out samples")

TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (
    PROMPTS, ROLLOUTS, REWARDS, WEIGHTS, PROMPT_STATS, TRAIN_LOG, REFERENCE_EVAL, POLICY_EVAL,
    REFERENCE_SAMPLES, POLICY_SAMPLES, REFERENCE_SAMPLES_POLICY_LOGPROBS, EVAL,
    REFERENCE_ANSWER_PROBABILITY, ANSWER_PROBABILITY, TRAIN_LOGPROBS, HELDOUT_LOGPROBS,
    REPLAY_ROLLOUTS, REPLAY_REWARDS, REPLAY_LOGPROBS,
)}
VIEWS = [spec for spec in TABLES.values() if spec.view]
MLFLOW_TABLES = [spec for spec in TABLES.values() if spec.mlflow]
# What a completed round directory holds (bolt-round writes all of these).
ROUND_TABLES = [spec for spec in TABLES.values() if spec.name not in {
    "reference_answer_probability", "answer_probability", "train_logprobs", "heldout_logprobs",
    "replay_rollouts", "replay_rewards", "replay_logprobs"}]


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_statement(spec: TableSpec, root: str = "") -> str:
    """CREATE VIEW over <root><pipeline>/round-<k>/<name>.parquet of every pipeline and round,
    with `pipeline` and `round` parsed from the path (a table's own `round` column gives way)."""
    own = ", round" if "round" in spec.schema.names else ""
    glob = _sql_literal(f"{root}*/round-*/{spec.file_name}")
    return (
        f"CREATE OR REPLACE VIEW {spec.view} AS\n"
        "SELECT regexp_extract(filename, '([^/\\\\]+)[/\\\\]round-[0-9]+[/\\\\][^/\\\\]+$', 1) AS pipeline,\n"
        "       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\\\][^/\\\\]+$', 1) AS INTEGER) AS round,\n"
        f"       * EXCLUDE (filename{own})\n"
        f"FROM read_parquet({glob}, filename = true, union_by_name = true, can_have_nan = true)"
    )


VIEWS_HEADER = """\
-- Generated by `bolt views` from the table registry (bolt_tasks/core/tables.py); do not edit.
-- One view per table of a runs directory, over every pipeline and round. Each view is the union
-- of <pipeline>/round-<k>/<table>.parquet with two columns first, parsed from the file's path:
--   pipeline  VARCHAR  the pipeline directory name
--   round     INTEGER  k of round-<k> (rollouts stores a `round` of its own; the view shows this one)
-- union_by_name: files written by older code may lack newer columns (they read as NULL).
-- can_have_nan: without it DuckDB trusts Parquet min/max statistics, which leave NaN out, and
-- skips row groups when filtering for NaN (duckdb/duckdb#25521).
--
-- The globs are relative to the current directory: run the duckdb CLI from INSIDE the runs
-- directory (cd runs && duckdb -init ../sql/views.sql), or write a copy whose globs name it:
-- bolt views --runs-dir runs > views.sql. A view needs at least one matching file (DuckDB
-- rejects a glob that matches none), and the CLI exits when an -init file fails: before every
-- table has been written once, start duckdb and type `.read views.sql` instead, which reports
-- the missing tables and creates the other views. `bolt sql` creates only the views whose table
-- exists, and refuses anything but reads; plain duckdb does not.
"""


def views_sql(root: str = "") -> str:
    """sql/views.sql: every registered view, globs relative to `root` (empty: the current
    directory)."""
    parts = [VIEWS_HEADER]
    for spec in VIEWS:
        parts.append(f"-- {spec.view}: {spec.file_name}, {spec.description}\n{view_statement(spec, root)};\n")
    return "\n".join(parts)
