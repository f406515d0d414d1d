"""A refreshed round that replays earlier rounds' samples (weighting.replay_rounds; docs/DESIGN.md
"Replay"): the pool of the round's own rollouts and those of the rounds before it, on the
prompts the round samples, each response scored under every sampler of the pool; the weights
are then sql/replay_tilt.sql's (stages/weights.py, Replay).

Pooling only moves rows: a pooled row keeps its `round` (the sampler that drew it) and gets
sample_idx = round * stride + its own sample_idx, unique per prompt.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bolt_tasks.core.storage import TableRef, write_table_atomic
from bolt_tasks.core.tables import REPLAY_LOGPROBS, REPLAY_REWARDS, REPLAY_ROLLOUTS
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.modeling import load_policy


def renumbered(table: pa.Table, offset: int) -> pa.Table:
    """`table` with offset added to its sample_idx."""
    field = table.schema.field("sample_idx")
    shifted = pc.add(pc.cast(table["sample_idx"], pa.int64()), offset)
    return table.set_column(table.schema.get_field_index("sample_idx"), field, pc.cast(shifted, field.type))


def pool_rounds(rounds: dict[int, tuple[str, str]], current_round: int, rollouts_out: str | Path,
                rewards_out: str | Path) -> tuple[TableRef, TableRef]:
    """Pooled rollouts and rewards of `rounds` ({round: (rollouts path, rewards path)}), on the
    prompts of `current_round`'s rollouts."""
    tables = {k: (pq.read_table(paths[0]), pq.read_table(paths[1])) for k, paths in rounds.items()}
    prompts = pa.array(sorted(set(tables[current_round][0]["prompt_id"].to_pylist())))
    stride = 1 + max(pc.max(rollouts["sample_idx"]).as_py() for rollouts, _ in tables.values())
    pooled_rollouts, pooled_rewards = [], []
    for k, (rollouts, rewards) in sorted(tables.items()):
        if set(rollouts["round"].to_pylist()) != {k}:
            raise ValueError(f"{rounds[k][0]}: the rollouts of round {k} name another sampling round")
        pooled_rollouts.append(renumbered(rollouts.filter(pc.is_in(rollouts["prompt_id"], prompts)), k * stride))
        pooled_rewards.append(renumbered(rewards.filter(pc.is_in(rewards["prompt_id"], prompts)), k * stride))
    return (write_table_atomic(REPLAY_ROLLOUTS.conform(pa.concat_tables(pooled_rollouts)), rollouts_out),
            write_table_atomic(REPLAY_REWARDS.conform(pa.concat_tables(pooled_rewards)), rewards_out))


def score_pool(pooled_rollouts: str | Path, samplers: dict[int, str], out_path: str | Path,
               batch_size: int) -> TableRef:
    """Every pooled response's log-prob under every sampler of the pool ({round: model path}),
    one forward pass each: (prompt_id, sample_idx, round, logprob)."""
    rollouts = pq.read_table(pooled_rollouts)
    parts = []
    for k, model_path in sorted(samplers.items()):
        model, tokenizer = load_policy(model_path)
        logprobs = response_logprobs(
            model, rollouts["prompt_token_ids"].to_pylist(), rollouts["response_token_ids"].to_pylist(),
            tokenizer.pad_token_id, batch_size=batch_size,
            description=f"replay: the pool under round {k}'s sampler")
        del model
        parts.append(pa.table({"prompt_id": rollouts["prompt_id"], "sample_idx": rollouts["sample_idx"],
                               "round": pa.array([k] * rollouts.num_rows, pa.int32()),
                               "logprob": pa.array(logprobs, pa.float64())}))
    return write_table_atomic(REPLAY_LOGPROBS.conform(pa.concat_tables(parts)), out_path)
