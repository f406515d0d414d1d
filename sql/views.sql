-- One view per table of a runs directory, over every pipeline and round: `bolt sql` creates
-- these (bolt_tasks/sql_shell.py). Each view is the union of <pipeline>/round-<k>/<table>.parquet
-- with two columns first, parsed from the file's path:
--   pipeline  VARCHAR  the pipeline directory name
--   round     INTEGER  k of round-<k> (rollouts stores a `round` of its own; the view shows this one)
-- union_by_name: files written by older code may lack newer columns (they read as NULL).
-- can_have_nan: without it DuckDB trusts Parquet min/max statistics, which leave NaN out, and
-- skips row groups when filtering for NaN (duckdb/duckdb#25521).
--
-- The globs are relative to the current directory. With the duckdb CLI, run it from INSIDE the
-- runs directory:
--     cd runs && duckdb -init ../sql/views.sql
-- A view needs at least one matching file (DuckDB rejects a glob that matches none), and the CLI
-- exits when an -init file fails: before every table has been written once, start `duckdb` in
-- the runs directory and type `.read ../sql/views.sql` instead, which reports the missing tables
-- and creates the other views. `bolt sql` resolves the globs against --runs-dir itself, creates
-- only the views whose table exists, and refuses anything but reads; plain duckdb does not.

CREATE OR REPLACE VIEW prompts AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/prompts.parquet', filename = true, union_by_name = true, can_have_nan = true);

CREATE OR REPLACE VIEW rollouts AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename, round)
FROM read_parquet('*/round-*/rollouts.parquet', filename = true, union_by_name = true, can_have_nan = true);

CREATE OR REPLACE VIEW rewards AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/rewards.parquet', filename = true, union_by_name = true, can_have_nan = true);

CREATE OR REPLACE VIEW weights AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/weights.parquet', filename = true, union_by_name = true, can_have_nan = true);

CREATE OR REPLACE VIEW prompt_stats AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/prompt_stats.parquet', filename = true, union_by_name = true, can_have_nan = true);

-- eval.parquet: the held-out evaluation, pi_ref and pi_BOLT side by side, one row per prompt.
CREATE OR REPLACE VIEW evals AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/eval.parquet', filename = true, union_by_name = true, can_have_nan = true);

CREATE OR REPLACE VIEW reference_eval AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/reference_eval.parquet', filename = true, union_by_name = true, can_have_nan = true);

CREATE OR REPLACE VIEW policy_eval AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/policy_eval.parquet', filename = true, union_by_name = true, can_have_nan = true);

CREATE OR REPLACE VIEW train_log AS
SELECT regexp_extract(filename, '([^/\\]+)[/\\]round-[0-9]+[/\\][^/\\]+$', 1) AS pipeline,
       CAST(regexp_extract(filename, 'round-([0-9]+)[/\\][^/\\]+$', 1) AS INTEGER) AS round,
       * EXCLUDE (filename)
FROM read_parquet('*/round-*/train_log.parquet', filename = true, union_by_name = true, can_have_nan = true);
