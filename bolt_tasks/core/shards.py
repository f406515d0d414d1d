"""Prompt shards: a stage split over consecutive runs of prompts, each run its own cached task
writing its own Parquet part, and the parts gathered into the round's table.

A crash loses one shard's work (a rerun finds the finished shards cached); the gathered table
is what the views and the later stages read. Parts live under <round>/parts/<table>/ and are
kept: they are what lets a rerun redo only the missing shards (delete parts/ after a round to
reclaim the space). One shard writes the table itself, with no parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from bolt_tasks.core.catalogue import RoundDirectory
from bolt_tasks.core.storage import TableRef, atomic_path


@dataclass(frozen=True)
class Shard:
    """Prompts start .. stop - 1 (positions in the split's prompt order) of shard index/count."""

    index: int
    count: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.index + 1:05d}-of-{self.count:05d}"

    @property
    def log_suffix(self) -> str:
        """What tells this shard's log files apart from its siblings' ("" for a single shard)."""
        return "" if self.count == 1 else f"-{self.name}"

    def of(self, table):
        """This shard's rows of a table (or list) in the split's prompt order."""
        return table[self.start : self.stop]


def plan_shards(prompts: int, shards: int = 1, prompts_per_shard: int | None = None,
                block: int = 1) -> list[Shard]:
    """Consecutive, balanced shards of `prompts` prompts: `shards` of them, or as many as
    keep each within prompts_per_shard (rounded up to a block), each starting at a multiple of
    `block` (the prompts of one decode batch: a shard then computes in the batches of a single
    pass); fewer when there are fewer blocks, never an empty one (one shard, even of none)."""
    blocks = math.ceil(prompts / block)
    count = math.ceil(blocks / math.ceil(prompts_per_shard / block)) if prompts_per_shard else shards
    count = max(1, min(count, blocks))
    bounds = [min(prompts, (index * blocks // count) * block) for index in range(count + 1)]
    return [Shard(i, count, bounds[i], bounds[i + 1]) for i in range(count)]


def part_path(round_dir: RoundDirectory, table: str, shard: Shard) -> str:
    """Where a shard of `table` writes: the table itself when there is one shard."""
    if shard.count == 1:
        return round_dir.table(table)
    return str(round_dir.directory / "parts" / table / f"{shard.name}.parquet")


def gather_parts(parts: list[TableRef], out_path: str | Path) -> TableRef:
    """The parts' rows in shard order, written as one table (streamed row group by row group,
    atomically). A single part is the table already."""
    if len(parts) == 1 and Path(parts[0].path) == Path(out_path):
        return parts[0]
    schemas = [pq.read_schema(part.path) for part in parts]
    if any(not schema.equals(schemas[0]) for schema in schemas):
        raise ValueError(f"the parts of {out_path} do not share one schema: {[p.path for p in parts]}")
    with atomic_path(out_path) as temp:
        with pq.ParquetWriter(temp, schemas[0]) as writer:
            for part in parts:
                source = pq.ParquetFile(part.path)
                for group in range(source.num_row_groups):
                    writer.write_table(source.read_row_group(group))
    return TableRef.of_file(out_path)
