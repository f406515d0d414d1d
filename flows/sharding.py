"""Wiring of a sharded stage: one task per prompt shard (in turn here, or side by side on Ray),
then their parts gathered into the round's table (bolt_tasks/core/shards.py)."""

from __future__ import annotations

import dataclasses

from bolt_tasks.core.caching import stored_in
from bolt_tasks.core.catalogue import RoundDirectory, RunsDirectory
from bolt_tasks.core.config import SamplingConfig
from bolt_tasks.core.gather_stage import gather_task
from bolt_tasks.core.shards import Shard, part_path, plan_shards
from bolt_tasks.core.storage import TableRef
from bolt_tasks.sampling.backends import prompts_per_batch


def prompt_shards(prompts: TableRef, split: str, sampling: SamplingConfig, batch_size: int,
                  samples_per_prompt: int) -> list[Shard]:
    """The shards of `split`'s prompts, cut between the decode batches of batch_size rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    splits = pq.read_table(prompts.path, columns=["split"])["split"]
    return plan_shards(pc.sum(pc.equal(splits, split)).as_py() or 0, sampling.shards,
                       sampling.prompts_per_shard, prompts_per_batch(batch_size, samples_per_prompt))


def gathered(parts: list, tables: tuple[str, ...], runs: RunsDirectory, round_dir: RoundDirectory):
    """The round's tables from the shards' parts: one TableRef per name in `tables` (each part
    result is a TableRef, or a tuple of them in `tables` order)."""
    gather = stored_in(gather_task, round_dir.directory, runs.root)
    columns = [[part] if len(tables) == 1 else list(part) for part in parts]
    refs = []
    for position, table in enumerate(tables):
        table_parts = [column[position] for column in columns]
        if len(table_parts) == 1:
            refs.append(table_parts[0])
        else:
            whole = gather.with_options(name=f"gather-{table}")(table_parts, round_dir.table(table))
            # the stage's time is its shards' (one after another here; side by side on Ray)
            refs.append(dataclasses.replace(whole, seconds=whole.seconds + sum(p.seconds for p in table_parts)))
    return refs[0] if len(tables) == 1 else tuple(refs)


def shard_paths(round_dir: RoundDirectory, table: str, shards: list[Shard]) -> list[str]:
    return [part_path(round_dir, table, shard) for shard in shards]
