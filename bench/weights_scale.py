"""The weights stage at scale: BOLT's SQL (stages/weights.write_weights, Parquet in and out)
against a numpy and a pandas implementation of the same numbers, in one run.

Synthetic round-0 rollouts shaped like the built-in task's: P prompts x 8 samples, responses of
1-5 tokens from a 14-symbol vocabulary (so a prompt repeats responses, as real ones do), 0/1
rewards, log-probs. Every implementation reads the same two Parquet files and computes the
weights and the per-prompt statistics (log Zhat, ESS, coverage, target success, distinct
responses, stored-support mass and price), each in its own process, so its peak memory is its
own (ru_maxrss). numpy and pandas hold their results in memory; the SQL, as the stage does,
writes them to Parquet (its time includes that write). numpy and pandas are checked against
the SQL's numbers before any figure is printed. The SQL runs twice at --rows: with DuckDB's
default memory limit (80% of RAM), and under --rows-memory-limit, set as a user would, through
BOLT_DUCKDB_MEMORY_LIMIT. Then the SQL alone at --large-rows under --memory-limit (it spills
to disk).

    python bench/weights_scale.py [--rows 10000000] [--rows-memory-limit 1.5GB]
                                  [--large-rows 100000000] [--memory-limit 4GB]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLES = 8
BETA = 0.5
CHUNK_PROMPTS = 500_000
VOCABULARY = 14


def write_rollouts(prompts: int, directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """rollouts.parquet and rewards.parquet, written in chunks of CHUNK_PROMPTS prompts."""
    rng = np.random.default_rng(seed)
    paths = directory / "rollouts.parquet", directory / "rewards.parquet"
    schemas = (
        pa.schema([("prompt_id", pa.string()), ("sample_idx", pa.int32()),
                   ("response_token_ids", pa.list_(pa.int32())), ("sampler_logprob", pa.float64()),
                   ("reference_logprob", pa.float64())]),
        pa.schema([("prompt_id", pa.string()), ("sample_idx", pa.int32()), ("reward", pa.float64()),
                   ("verifier", pa.string()), ("error", pa.string())]),
    )
    with pq.ParquetWriter(paths[0], schemas[0]) as rollouts, pq.ParquetWriter(paths[1], schemas[1]) as rewards:
        for start in range(0, prompts, CHUNK_PROMPTS):
            count = min(CHUNK_PROMPTS, prompts - start)
            rows = count * SAMPLES
            prompt_ids = np.repeat(np.char.add("p", np.char.zfill(
                np.arange(start, start + count).astype(str), 9)), SAMPLES)
            sample_idx = np.tile(np.arange(SAMPLES, dtype=np.int32), count)
            lengths = rng.integers(1, 6, rows)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            # few distinct answers per prompt: tokens drawn from a narrow prompt-specific range
            base = np.repeat(rng.integers(0, VOCABULARY - 3, count), SAMPLES)
            tokens = (np.repeat(base, lengths) + rng.integers(0, 3, offsets[-1])).astype(np.int32)
            logprob = -rng.exponential(2.0, rows)
            reward = (rng.random(rows) < np.repeat(rng.random(count), SAMPLES)).astype(np.float64)
            ids = pa.array(prompt_ids)
            rollouts.write_table(pa.table({
                "prompt_id": ids, "sample_idx": sample_idx,
                "response_token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(tokens)),
                "sampler_logprob": logprob, "reference_logprob": logprob}, schema=schemas[0]))
            rewards.write_table(pa.table({
                "prompt_id": ids, "sample_idx": sample_idx, "reward": reward,
                "verifier": pa.array(["exact_match"]).take(np.zeros(rows, np.int64)),
                "error": pa.nulls(rows, pa.string())},
                schema=schemas[1]))
    return paths


def _read_numpy(rollouts_path: Path, rewards_path: Path) -> dict:
    """Columns as numpy arrays, both tables' rows sorted by (prompt, sample) (Arrow's sort:
    numpy has no fast sort of strings) and assumed to hold the same keys; prompts as integer
    codes in that order."""
    import pyarrow.compute as pc

    by_key = [("prompt_id", "ascending"), ("sample_idx", "ascending")]
    rollouts = pq.read_table(rollouts_path)
    rollouts = rollouts.take(pc.sort_indices(rollouts, sort_keys=by_key))
    rewards = pq.read_table(rewards_path, columns=["prompt_id", "sample_idx", "reward", "error"])
    rewards = rewards.take(pc.sort_indices(rewards, sort_keys=by_key))
    encoded = rollouts["prompt_id"].combine_chunks().dictionary_encode()
    tokens = rollouts["response_token_ids"].combine_chunks()
    offsets = tokens.offsets.to_numpy()
    offsets = offsets - offsets[0]
    values = tokens.flatten().to_numpy().astype(np.uint64)
    # one 64-bit polynomial hash per response (wrapping arithmetic), plus its length
    position = np.arange(values.size) - np.repeat(offsets[:-1], np.diff(offsets))
    powers = np.power(np.uint64(1_000_003), position.astype(np.uint64))
    with np.errstate(over="ignore"):
        hashed = np.add.reduceat(values * powers, offsets[:-1]) if values.size else values
        hashed = hashed * np.uint64(31) + np.diff(offsets).astype(np.uint64)
    return {
        "prompt": encoded.indices.to_numpy(), "prompt_ids": encoded.dictionary,
        "sample_idx": rollouts["sample_idx"].to_numpy(), "response_hash": hashed,
        "reference": rollouts["reference_logprob"].to_numpy(),
        "sampler": rollouts["sampler_logprob"].to_numpy(),
        "reward": rewards["reward"].to_numpy(),
        "verified": rewards["error"].is_null().to_numpy(zero_copy_only=False),
    }


def numpy_weights(rollouts_path: Path, rewards_path: Path) -> dict:
    """The default scheme (bolt, eta = 1/beta, alpha = 1, prompt normalisation) in numpy."""
    c = _read_numpy(rollouts_path, rewards_path)
    prompt, reward = c["prompt"], c["reward"]
    starts = np.flatnonzero(np.r_[True, prompt[1:] != prompt[:-1]])
    n = np.diff(np.r_[starts, prompt.size])

    def group_logsumexp(x: np.ndarray, group_starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        top = np.maximum.reduceat(x, group_starts)
        return top + np.log(np.add.reduceat(np.exp(x - np.repeat(top, sizes)), group_starts))

    log_tilt = reward / BETA + (c["reference"] - c["sampler"])
    log_weight = log_tilt - np.repeat(group_logsumexp(log_tilt, starts, n), n) + np.repeat(np.log(n), n)
    weight = np.exp(log_weight)
    log_z = group_logsumexp(log_tilt, starts, n) - np.log(n)
    top = np.maximum.reduceat(log_weight, starts)
    scaled = np.exp(log_weight - np.repeat(top, n))
    scaled_sum = np.add.reduceat(scaled, starts)
    ess = scaled_sum ** 2 / np.add.reduceat(scaled ** 2, starts)
    threshold = reward[c["verified"]].max()
    success = c["verified"] & (reward >= threshold)
    covered = np.maximum.reduceat(success, starts).astype(bool)
    target_success = np.add.reduceat(np.where(success, scaled, 0.0), starts) / scaled_sum
    # distinct responses per prompt: min log pi_ref and min reward of each (prompt, response)
    order = np.lexsort((c["response_hash"], prompt))
    pair_prompt, pair_hash = prompt[order], c["response_hash"][order]
    pair_starts = np.flatnonzero(np.r_[True, (pair_prompt[1:] != pair_prompt[:-1]) | (pair_hash[1:] != pair_hash[:-1])])
    target = (np.minimum.reduceat(c["reference"][order], pair_starts)
              + np.minimum.reduceat(reward[order], pair_starts) / BETA)
    distinct_prompt = pair_prompt[pair_starts]
    distinct_starts = np.flatnonzero(np.r_[True, distinct_prompt[1:] != distinct_prompt[:-1]])
    distinct = np.diff(np.r_[distinct_starts, distinct_prompt.size])
    log_support = group_logsumexp(target, distinct_starts, distinct) - log_z
    return {
        "prompt_id": c["prompt_ids"].take(pa.array(prompt[starts])), "log_weight": log_weight,
        "weight": weight, "n": n, "mean_reward": np.add.reduceat(reward, starts) / n, "log_z": log_z,
        "ess": ess, "ess_fraction": ess / n, "covered": covered, "target_success": target_success,
        "distinct_responses": distinct, "log_support_mass": log_support,
        "support_mass": np.exp(log_support), "support_price": -BETA * log_support,
    }


def pandas_weights(rollouts_path: Path, rewards_path: Path) -> dict:
    """The same numbers with pandas: a merge, then group-bys."""
    import pandas as pd

    rollouts = pd.read_parquet(rollouts_path)
    rewards = pd.read_parquet(rewards_path, columns=["prompt_id", "sample_idx", "reward", "error"])
    rollouts["response"] = rollouts["response_token_ids"].map(lambda tokens: tokens.tobytes())
    rollouts = rollouts.drop(columns="response_token_ids")
    frame = rewards.merge(rollouts, on=["prompt_id", "sample_idx"]).sort_values(["prompt_id", "sample_idx"])
    frame["verified"] = frame["error"].isna()
    frame["log_tilt"] = frame["reward"] / BETA + frame["reference_logprob"] - frame["sampler_logprob"]
    by_prompt = frame.groupby("prompt_id", sort=True)
    top = by_prompt["log_tilt"].transform("max")
    frame["shifted"] = np.exp(frame["log_tilt"] - top)
    log_sum = top + np.log(by_prompt["shifted"].transform("sum"))
    n = by_prompt["log_tilt"].transform("size")
    frame["log_weight"] = frame["log_tilt"] - log_sum + np.log(n)
    frame["weight"] = np.exp(frame["log_weight"])
    frame["scaled"] = np.exp(frame["log_weight"] - by_prompt["log_weight"].transform("max"))
    frame["scaled_square"] = frame["scaled"] ** 2
    threshold = frame.loc[frame["verified"], "reward"].max()
    frame["success"] = frame["verified"] & (frame["reward"] >= threshold)
    frame["scaled_success"] = frame["scaled"].where(frame["success"], 0.0)
    stats = by_prompt.agg(n=("reward", "size"), mean_reward=("reward", "mean"),
                          top=("log_tilt", "max"), shifted=("shifted", "sum"),
                          scaled_sum=("scaled", "sum"), square_sum=("scaled_square", "sum"),
                          success_sum=("scaled_success", "sum"), covered=("success", "any"))
    stats["log_z"] = stats["top"] + np.log(stats["shifted"]) - np.log(stats["n"])
    stats["ess"] = stats["scaled_sum"] ** 2 / stats["square_sum"]
    distinct = frame.groupby(["prompt_id", "response"], sort=False).agg(
        reference=("reference_logprob", "min"), reward=("reward", "min")).reset_index()
    distinct["target"] = distinct["reference"] + distinct["reward"] / BETA
    distinct_top = distinct.groupby("prompt_id")["target"].transform("max")
    distinct["shifted"] = np.exp(distinct["target"] - distinct_top)
    distinct["top"] = distinct_top
    support = distinct.groupby("prompt_id", sort=True).agg(
        distinct_responses=("target", "size"), top=("top", "first"), shifted=("shifted", "sum"))
    log_support = support["top"] + np.log(support["shifted"]) - stats["log_z"]
    return {
        "prompt_id": stats.index.to_numpy(), "log_weight": frame["log_weight"].to_numpy(),
        "weight": frame["weight"].to_numpy(), "n": stats["n"].to_numpy(),
        "mean_reward": stats["mean_reward"].to_numpy(), "log_z": stats["log_z"].to_numpy(),
        "ess": stats["ess"].to_numpy(), "ess_fraction": (stats["ess"] / stats["n"]).to_numpy(),
        "covered": stats["covered"].to_numpy(),
        "target_success": (stats["success_sum"] / stats["scaled_sum"]).to_numpy(),
        "distinct_responses": support["distinct_responses"].to_numpy(),
        "log_support_mass": log_support.to_numpy(), "support_mass": np.exp(log_support).to_numpy(),
        "support_price": (-BETA * log_support).to_numpy(),
    }


def sql_weights(rollouts_path: Path, rewards_path: Path, memory_limit: str | None) -> None:
    """The weights stage's own path: DuckDB reads the Parquet files and writes its two tables
    to Parquet (sql_weights.parquet, sql_stats.parquet beside the inputs)."""
    from bolt_tasks.core.config import WeightingConfig
    from bolt_tasks.core.duck import MEMORY_LIMIT_VARIABLE, connect
    from bolt_tasks.stages.weights import write_weights

    if memory_limit:  # the setting a user would make
        os.environ[MEMORY_LIMIT_VARIABLE] = memory_limit
    connection = connect()
    if memory_limit:
        connection.execute(f"SET temp_directory = '{rollouts_path.parent / 'duckdb-spill'}'")
    # rho = 1: the baselines weight the whole table, as the SQL must here to be compared
    write_weights(str(rollouts_path), str(rewards_path),
                  WeightingConfig(beta=BETA, zero_information_keep=1.0),
                  rollouts_path.parent / "sql_weights.parquet",
                  rollouts_path.parent / "sql_stats.parquet", connection=connection)


def sql_numbers(work: Path) -> dict:
    weights, stats = pq.read_table(work / "sql_weights.parquet"), pq.read_table(work / "sql_stats.parquet")
    numbers = {"prompt_id": stats["prompt_id"]}
    numbers |= {name: weights[name].to_numpy() for name in ("log_weight", "weight")}
    for name in ("n", "mean_reward", "log_z", "ess", "ess_fraction", "covered", "target_success",
                 "distinct_responses", "log_support_mass", "support_mass", "support_price"):
        numbers[name] = stats[name].to_numpy(zero_copy_only=False)
    return numbers


def run_one(implementation: str, work: Path, memory_limit: str | None) -> None:
    """Child process: one implementation, timed; its numbers saved for the comparison."""
    paths = work / "rollouts.parquet", work / "rewards.parquet"
    started = time.perf_counter()
    if implementation == "sql":
        sql_weights(*paths, memory_limit)
    else:
        result = (numpy_weights if implementation == "numpy" else pandas_weights)(*paths)
    seconds = time.perf_counter() - started
    if implementation != "sql":
        np.savez(work / f"{implementation}.npz", **{k: np.asarray(v) for k, v in result.items()
                                                     if k != "prompt_id"})
    print(json.dumps({"seconds": seconds}))


def measure(implementation: str, work: Path, memory_limit: str | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", implementation, "--work", str(work)]
    if memory_limit:
        command += ["--worker-memory-limit", memory_limit]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{implementation} failed (exit {process.returncode})")
    seconds = json.loads(output.strip().splitlines()[-1])["seconds"]
    return {"seconds": round(seconds, 2), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3)}


def check_agreement(work: Path) -> float:
    """Largest relative difference between numpy's or pandas' numbers and the SQL's."""
    sql = sql_numbers(work)
    worst = 0.0
    for other in ("numpy", "pandas"):
        theirs = np.load(work / f"{other}.npz")
        for name in set(sql) - {"prompt_id"}:
            ours, them = sql[name].astype(float), theirs[name].astype(float)
            if ours.shape != them.shape:
                raise SystemExit(f"{other} {name}: {them.shape} values, the SQL has {ours.shape}")
            difference = np.max(np.abs(ours - them) / np.maximum(1.0, np.abs(ours)))
            if not difference <= 1e-9:
                raise SystemExit(f"{other} disagrees with the SQL on {name}: {difference:.3g}")
            worst = max(worst, float(difference))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--large-rows", type=int, default=100_000_000, help="0: skip")
    parser.add_argument("--rows-memory-limit", default="1.5GB",
                        help="DuckDB's limit for the SQL's second run at --rows")
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB's limit at --large-rows")
    parser.add_argument("--worker-memory-limit", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help="where the Parquet files go (default: a temp dir)")
    parser.add_argument("--out", default="bench-results/weights_scale.json")
    parser.add_argument("--worker", choices=("sql", "numpy", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_one(args.worker, Path(args.work), args.worker_memory_limit)
        return

    report = {"machine": f"{os.cpu_count()} CPU cores", "rows": args.rows}
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        write_rollouts(args.rows // SAMPLES, work)
        print(f"{args.rows:,} rollouts written in {time.perf_counter() - started:.0f} s", flush=True)
        for implementation in ("sql", "numpy", "pandas"):
            report[implementation] = measure(implementation, work)
            print(f"  {implementation:6s} {report[implementation]}", flush=True)
        limited = dict(measure("sql", work, args.rows_memory_limit), duckdb_memory_limit=args.rows_memory_limit)
        report["sql_memory_limited"] = limited
        print(f"  sql under {args.rows_memory_limit}: {limited}", flush=True)
        report["largest_relative_difference"] = check_agreement(work)
        report["sql_over_numpy_time"] = round(report["sql"]["seconds"] / report["numpy"]["seconds"], 2)
        report["sql_over_pandas_peak_memory"] = round(
            report["sql"]["peak_rss_gib"] / report["pandas"]["peak_rss_gib"], 2)
        report["sql_memory_limited_over_numpy_time"] = round(limited["seconds"] / report["numpy"]["seconds"], 2)
        report["sql_memory_limited_over_pandas_peak_memory"] = round(
            limited["peak_rss_gib"] / report["pandas"]["peak_rss_gib"], 2)
        print(f"SQL / numpy time {report['sql_over_numpy_time']}x, SQL / pandas peak memory "
              f"{report['sql_over_pandas_peak_memory']}x; under {args.rows_memory_limit}: "
              f"{report['sql_memory_limited_over_numpy_time']}x and "
              f"{report['sql_memory_limited_over_pandas_peak_memory']}x; numbers agree within "
              f"{report['largest_relative_difference']:.1e}", flush=True)
    if args.large_rows:
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            work = Path(scratch)
            started = time.perf_counter()
            write_rollouts(args.large_rows // SAMPLES, work)
            print(f"{args.large_rows:,} rollouts written in {time.perf_counter() - started:.0f} s", flush=True)
            try:
                report["large"] = dict(measure("sql", work, args.memory_limit), rows=args.large_rows,
                                       duckdb_memory_limit=args.memory_limit)
            except SystemExit as failure:  # the 10M figures above still get written
                report["large"] = {"rows": args.large_rows, "duckdb_memory_limit": args.memory_limit,
                                   "failed": str(failure)}
            print(f"  sql under {args.memory_limit}: {report['large']}", flush=True)
    from provenance import provenance  # bench/ is on sys.path when this runs as a script

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report | {"provenance": provenance()}, indent=2))


if __name__ == "__main__":
    main()
