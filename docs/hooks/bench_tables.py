"""Benchmark and race tables for the docs site, built from the JSON files in docs/bench/.

A page writes a marker such as `<!-- bench: train_throughput -->` (or, for a view other than a
file's first, `<!-- bench: e4_builtin_seed0 settings -->`); `on_page_markdown`, registered as an
MkDocs hook in mkdocs.yml, replaces it with a Markdown table built from
docs/bench/train_throughput.json, headed by the date, commit, machine and command that the JSON
records under its "provenance" key (bench/provenance.py writes it when a bench runs). The figures
on the page are then the ones in the file: edit the file and the page changes, and nobody retypes
a number. A block marked `"backfilled": true` was reconstructed later from the git history, and
the table says so.

Nothing here imports MkDocs, so tests/test_docs.py loads this file and calls `render` directly.
A marker that names a missing file, a view that does not exist, or a JSON whose shape no
renderer knows raises, which fails `mkdocs build`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MARKER = re.compile(r"<!--\s*bench:\s*([A-Za-z0-9_.\-]+)(?:\s+([a-z_]+))?\s*-->")
PROVENANCE_FIELDS = ("date", "commit", "machine", "command")
NOT_RECORDED = "not recorded"


# ---------------------------------------------------------------- formatting helpers

def cell(value) -> str:
    """A table cell: pipes escaped so a value cannot split its row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(value, missing: str = "-") -> str:
    """Seconds to three significant figures or so, without exponents."""
    if value is None:
        return missing
    value = float(value)
    if value >= 100:
        return f"{value:.0f} s"
    if value >= 10:
        return f"{value:.1f} s"
    return f"{value:.2f} s"


def accuracy(value, missing: str = "-") -> str:
    return missing if value is None else f"{float(value):.3f}"


def ratio(value, missing: str = "-") -> str:
    return missing if value is None else f"{float(value):.2f}"


def provenance(data: dict) -> dict[str, str]:
    """date, commit, machine and command as the JSON's `provenance` block records them; a field
    the block lacks is reported as not recorded, never guessed. Keys of the same names at the
    top level are the bench's own figures (train_throughput.json's "machine": "2 CPU cores"),
    not provenance, and are not read."""
    block = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    return {field: NOT_RECORDED if block.get(field) in (None, "") else str(block[field])
            for field in PROVENANCE_FIELDS}


def short_commit(commit: str) -> str:
    """A 40-hex commit to its first 10 characters, "-dirty" kept; anything else as it is."""
    match = re.fullmatch(r"([0-9a-f]{40})(-dirty)?", commit)
    return match.group(1)[:10] + (match.group(2) or "") if match else commit


def provenance_line(name: str, data: dict) -> str:
    p = provenance(data)
    command = p["command"] if p["command"] == NOT_RECORDED else f"`{p['command']}`"
    line = (f"*Generated from `docs/bench/{name}.json`. Date: {p['date']}. "
            f"Commit: {short_commit(p['commit'])}. Machine: {p['machine']}. Command: {command}.")
    block = data.get("provenance")
    if isinstance(block, dict) and block.get("backfilled"):
        line += (" Provenance backfilled from the git history, not recorded when the bench ran: the"
                 " date and commit are the commit that last wrote the file, the machine and command"
                 " what the README said of the run.")
    return line + "*"


# ---------------------------------------------------------------- one renderer per JSON shape

def race_levels(data: dict) -> str:
    """E4 races (bench/grpo_vs_bolt.py, bench/grpo_vs_bolt_real.py): per level, each arm's
    fastest setting and the ratio of their times."""
    summary = data["summary"]
    rows = []
    for key, level in summary["levels"].items():
        label = f"{key}, {accuracy(level['level'])}" if key == "GRPO's best" else key
        rows.append([label, level["bolt_setting"] or "not reached", seconds(level["bolt_seconds"]),
                     level["grpo_setting"] or "not reached", seconds(level["grpo_seconds"]),
                     ratio(level.get("bolt_over_grpo"))])
    header = ["level", "BOLT's fastest setting", "BOLT", "GRPO's fastest setting", "GRPO",
              "BOLT / GRPO"]
    return race_caption(summary) + "\n\n" + table(header, rows)


def race_settings(data: dict) -> str:
    """Every setting of an E4 race: best held-out accuracy within the budget and the seconds it
    took to reach each level."""
    summary = data["summary"]
    levels = list(summary["levels"])
    rows = [[name, accuracy(s["best_accuracy"])] + [seconds(s.get(f"seconds_to_{level}"))
                                                    for level in levels]
            for name, s in summary["settings"].items()]
    header = ["setting", "best accuracy"] + [f"to {level}" for level in levels]
    return race_caption(summary) + "\n\n" + table(header, rows)


def race_caption(summary: dict) -> str:
    parts = [f"seed {summary.get('seed', NOT_RECORDED)}",
             f"budget {seconds(summary.get('budget_seconds'), NOT_RECORDED)} per setting",
             f"pi_ref's accuracy {accuracy(summary.get('reference_accuracy'), NOT_RECORDED)}"]
    if "recipe" in summary:
        parts.append(f"recipe {summary['recipe']}, up to {summary.get('max_new_tokens')} new tokens")
    if "judge" in summary:
        parts.append(f"judged by {summary['judge']}")
    return "Race: " + "; ".join(parts) + ". A level not reached within the budget shows '-'."


def sweep_betas(data: dict) -> str:
    """bench/sweep_race.py: four betas from one set of BOLT rollouts against one GRPO run per beta."""
    summary, bolt = data["summary"], data["bolt"]
    rows = []
    for beta, s in summary["betas"].items():
        curve = bolt["betas"][beta]["curve"]
        first = f"{accuracy(curve[0]['accuracy'])} ({seconds(curve[0]['seconds'])})" if curve else "-"
        rows.append([beta, accuracy(s["level"]), first,
                     f"{accuracy(s['bolt_accuracy'])} ({s['bolt_epochs']} epochs)",
                     seconds(s["bolt_seconds"], "not reached"), seconds(s["grpo_seconds"], "not reached"),
                     accuracy(s["grpo_best_accuracy"]), ratio(s["ratio"])])
    header = ["beta", "level", "BOLT after its first fit", "BOLT's best within the budget",
              "BOLT to the level", "GRPO to the level", "GRPO's best", "BOLT / GRPO"]
    caption = (f"Seed {summary['seed']}; pi_ref's accuracy {accuracy(summary['reference_accuracy'])}; "
               f"each level {summary['level_share']:.0%} of the way from it to p*; budget "
               f"{seconds(summary['budget_seconds'])} per beta and arm; GRPO learning rate "
               f"{summary['grpo_learning_rate']}. The whole sweep: BOLT "
               f"{seconds(summary['bolt_sweep_seconds'])}, GRPO {seconds(summary['grpo_sweep_seconds'])}.")
    return caption + "\n\n" + table(header, rows)


def train_throughput(data: dict) -> str:
    """bench/train_throughput.py: training sequences per second, BOLT against TRL."""
    rows = []
    for model, result in data.items():
        if not isinstance(result, dict) or "best_sequences_per_second" not in result:
            continue
        best = result["best_sequences_per_second"]
        rows.append([model, best["bolt"], best["bolt-unshared"], best["trl"],
                     ratio(result["bolt_over_trl"]), ratio(result["bolt_unshared_over_trl"])])
    header = ["model", "BOLT seq/s", "BOLT unshared seq/s", "TRL seq/s", "BOLT / TRL",
              "unshared / TRL"]
    caption = (f"{data.get('steps')} optimizer steps of {data.get('batch_size')} sequences, "
               f"{data.get('samples_per_prompt')} responses per prompt; the best run of each trainer.")
    return caption + "\n\n" + table(header, rows)


def weights_scale(data: dict) -> str:
    """bench/weights_scale.py: the weights stage's SQL against numpy and pandas."""
    numpy_s, pandas_gib = data["numpy"]["seconds"], data["pandas"]["peak_rss_gib"]

    def row(label, result):
        return [label, seconds(result["seconds"]), f"{result['peak_rss_gib']:.2f} GiB",
                ratio(result["seconds"] / numpy_s) + "x", ratio(result["peak_rss_gib"] / pandas_gib) + "x"]

    rows = [row("numpy", data["numpy"]), row("pandas", data["pandas"]),
            row("SQL, DuckDB's default memory limit", data["sql"])]
    if "sql_memory_limited" in data:
        limited = data["sql_memory_limited"]
        rows.append(row(f"SQL, BOLT_DUCKDB_MEMORY_LIMIT={limited['duckdb_memory_limit']}", limited))
    header = [f"{data['rows']:,} rollouts", "seconds", "peak RSS", "time / numpy", "peak / pandas"]
    caption = (f"numpy and pandas agree with the SQL within "
               f"{data['largest_relative_difference']:.1e} relative.")
    text = caption + "\n\n" + table(header, rows)
    if "large" in data:
        large = data["large"]
        text += (f"\n\n{large['rows']:,} rollouts under a {large['duckdb_memory_limit']} DuckDB limit: "
                 f"{seconds(large['seconds'])}, peak RSS {large['peak_rss_gib']:.2f} GiB.")
    return text


def round_overhead(data: dict) -> str:
    """bench/round_overhead.py: a round's wall-clock against what its stages computed."""
    labels = {"default_building_reference": "default, pi_ref built in it",
              "default": "default, pi_ref reused", "tiny": "tiny (16 + 16 prompts, N = 2, 1 epoch)"}
    default_wall = data["default"]["wall_seconds"]
    rows = []
    for key, label in labels.items():
        r = data[key]
        bootstrap = r["stage_seconds"].get("bootstrap", 0.0)
        compute = seconds(r["compute_seconds"]) + (f" (bootstrap {seconds(bootstrap)})" if bootstrap else "")
        rows.append([label, seconds(r["wall_seconds"]), compute, seconds(r["overhead_seconds"]),
                     f"{r['overhead_seconds'] / default_wall:.1%}"])
    header = ["round", "wall-clock", "stage compute", "the rest",
              "the rest / the default round's wall-clock (pi_ref reused)"]
    caption = (f"The temporary Prefect server's start, paid once per command and not in these "
               f"figures: {seconds(data['prefect_server_start_seconds'])}.")
    return caption + "\n\n" + table(header, rows)


def contention(data: dict) -> str:
    """bench/contention.py: each stage alone and beside a competitor, with a fixed torch thread
    count (before) and with BOLT's thread fitting (bolt)."""
    by_key = {(s["stage"], s["competitor"], s["setting"]): s for s in data["slowdowns"]}
    rows = []
    for stage, competitor in dict.fromkeys((s["stage"], s["competitor"]) for s in data["slowdowns"]):
        row = [stage, competitor]
        for setting in ("before", "bolt"):
            s = by_key.get((stage, competitor, setting))
            row += ([f"{seconds(s['alone_s'])} / {seconds(s['beside_s'])}", f"{ratio(s['slowdown'])}x"]
                    if s else ["-", "-"])
        rows.append(row)
    header = ["stage", "competitor", "before: alone / beside", "before: slowdown",
              "bolt: alone / beside", "bolt: slowdown"]
    return table(header, rows)


def eval_backends(data: dict) -> str:
    """bench/eval_backends.py: one policy's held-out evaluation sampling, by backend."""
    rows = [[arm, seconds(best), sum(r["tokens"] for r in data["runs"][arm]) // len(data["runs"][arm]),
             len(data["runs"][arm]), ratio(data["speedup_over_first_arm"][arm]) + "x"]
            for arm, best in data["best_seconds"].items()]
    header = ["backend", "best seconds", "tokens sampled", "runs", "speed against the first"]
    caption = (f"{data['prompts']} prompts x {data['samples_per_prompt']} samples at temperature 1, "
               f"greedy, and log pi_ref of the samples; up to {data['max_new_tokens']} new tokens.")
    return caption + "\n\n" + table(header, rows)


def process_shards(data: dict) -> str:
    """bench/process_shards.py: the default round's shards in turn, in 1 and in 2 worker processes."""
    rows = [[arm, seconds(r["wall_seconds"]), seconds(r["stage_seconds"]["sampling"]),
             seconds(r["stage_seconds"]["evaluation"]), ratio(data["wall_ratio_to_in_turn"][arm]) + "x"]
            for arm, r in data["arms"].items()]
    header = ["shards run", "round wall-clock", "sampling (shards' seconds summed)",
              "evaluation (summed)", "wall-clock against in turn"]
    same = "identical" if data["rollouts_identical_across_arms"] else "NOT identical"
    caption = (f"The default round with its prompts in {data['shards']} shards; the rollouts and "
               f"rewards of the arms are {same}.")
    return caption + "\n\n" + table(header, rows)


def replay_ess(data: dict) -> str:
    """bench/replay_ess.py: per refreshed round, the ESS of the weights without replay and with it,
    per second of the compute that made them."""
    rows = []
    for k, ratio_k in data["ess_per_second_ratio"].items():
        for arm in ("fresh", "replay"):
            r = data["arms"][arm]["rounds"][k]
            data_seconds = seconds(r["data_seconds"]) + (
                f" ({seconds(r['replay_seconds'])} of it scoring the pool)" if r["replay_seconds"] else "")
            se = "-" if r["gain_se_points"] is None else f"{r['gain_se_points']:.1f}"
            rows.append([f"{k}, {arm}", f"{r['rows_weighted']:,}", f"{r['ess']:,.0f}",
                         f"{r['mean_ess_fraction']:.3f}", data_seconds, f"{r['ess_per_data_second']:,.0f}",
                         seconds(r["training_seconds"]), f"{r['gain_points']:+.1f} ({se})", f"{r['kl']:.3f}"])
        rows.append([f"{k}, replay / fresh", "", "", "", "", f"{ratio(ratio_k)}x", "", "", ""])
    header = ["round, arm", "weighted rows", "ESS (sum over prompts)", "ESS/N",
              "data seconds (sampling + scoring + replay)", "ESS per data-second", "training",
              "gain (SE), points", "KL"]
    options = " ".join(data["options"]) or "the defaults"
    caption = (f"`bolt refresh` to round {data['until_round']} with `{options}`, once without replay "
               f"and once with `weighting.replay_rounds={data['replay_rounds']}`.")
    return caption + "\n\n" + table(header, rows)


def zero_information(data: dict) -> str:
    """bench/zero_information.py: per seed and rho, the round's figures and its training time."""
    rows = []
    for seed, by_rho in data["seeds"].items():
        for rho, r in by_rho.items():
            se = "-" if r["gain_se_points"] is None else f"{r['gain_se_points']:.2f}"
            rows.append([seed, rho, f"{r['rows_trained']:,} / {r['rows']:,}", r["optimizer_steps"],
                         f"{r['gain_points']:+.1f} ({se})", f"{r['kl']:.3f}", f"{r['objective_j']:.3f}",
                         f"{r['target_error']:.3f}", seconds(r["stage_seconds"]["training"]),
                         f"{ratio(r['training_ratio_to_rho_1'])}x"])
    header = ["seed", "rho", "rows trained", "optimizer steps", "gain (SE), points", "KL to pi_ref",
              "J", "mean abs(p - p*)", "training", "training / rho = 1"]
    options = " ".join(data["options"])
    caption = f"{data['config']}{f' with `{options}`' if options else ''}."
    return caption + "\n\n" + table(header, rows)


def cache_check(data: dict) -> str:
    """bench/cache_check.py: what checking a cache hit costs, stage by stage and on a large table."""
    def mb(size):
        return f"{size / 1e6:.1f} MB"

    def ms(value):
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        return f"{value * 1e3:.2f} ms" if value < 1 else seconds(value)

    rows = [[s["result"], s["files"], mb(s["bytes"]), ms(s["read_seconds"]), ms(s["stamps_seconds"]),
             ms(s["digests_seconds"])] for s in data["stages"]]
    total = data["default_round"]
    rows.append(["the default round, every stage", sum(s["files"] for s in data["stages"]),
                 mb(total["bytes"]), ms(total["read_seconds"]), ms(total["stamps_seconds"]),
                 ms(total["digests_seconds"])])
    large = data["large_table"]
    header = ["cached result", "files", "size", "record read", "check, files untouched",
              "check, every mtime moved"]
    caption = (f"A {large['rows']:,}-row table ({mb(large['bytes'])}): checked in "
               f"{ms(large['stamps_seconds'])} when untouched, {ms(large['digests_seconds'])} when its "
               f"mtime moved (hashed again); writing it and its digest took "
               f"{seconds(large['write_and_digest_seconds'])}.")
    return caption + "\n\n" + table(header, rows)


def views(data: dict) -> dict:
    """The views a JSON of this shape offers, the first being the default."""
    summary = data.get("summary", {})
    if "levels" in summary and "settings" in summary:
        return {"levels": race_levels, "settings": race_settings}
    if "betas" in summary and "bolt" in data:
        return {"betas": sweep_betas}
    if any(isinstance(v, dict) and "best_sequences_per_second" in v for v in data.values()):
        return {"throughput": train_throughput}
    if {"sql", "numpy", "pandas"} <= data.keys():
        return {"scale": weights_scale}
    if {"tiny", "default", "default_building_reference"} <= data.keys():
        return {"overhead": round_overhead}
    if "slowdowns" in data:
        return {"slowdowns": contention}
    if "best_seconds" in data and "runs" in data:
        return {"backends": eval_backends}
    if "wall_ratio_to_in_turn" in data:
        return {"arms": process_shards}
    if "ess_per_second_ratio" in data:
        return {"rounds": replay_ess}
    if "rhos" in data and "seeds" in data:
        return {"rhos": zero_information}
    if "large_table" in data and "stages" in data:
        return {"stages": cache_check}
    return {}


def render(name: str, data: dict, view: str | None = None) -> str:
    """The Markdown that replaces `<!-- bench: name view -->`: the provenance line, then the table."""
    available = views(data)
    if not available:
        raise ValueError(f"docs/bench/{name}.json: no table is defined for a JSON of this shape")
    if view is None:
        view = next(iter(available))
    if view not in available:
        raise ValueError(f"docs/bench/{name}.json has no view {view!r}; it has {', '.join(available)}")
    return provenance_line(name, data) + "\n\n" + available[view](data)


def replace_markers(markdown: str, bench_dir: Path) -> str:
    def substitute(match: re.Match) -> str:
        name, view = match.group(1), match.group(2)
        path = Path(bench_dir) / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"bench marker {match.group(0)!r}: {path} does not exist")
        return render(name, json.loads(path.read_text()), view)

    return MARKER.sub(substitute, markdown)


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    """MkDocs hook: every page's markers replaced before Markdown is rendered."""
    return replace_markers(markdown, Path(config["docs_dir"]) / "bench")
