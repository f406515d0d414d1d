"""A refreshed round that replays the round before it, through the real CLI: round 1 trains on
the pool of rounds 0 and 1 (same prompts, twice the samples), scored under both samplers, its
weights sql/replay_tilt.sql's; the round reports the pool's ESS and the replay's seconds."""

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cli_runs import bolt

TINY = ["--set", "reference.steps=60", "--set", "reference.batch_size=32", "--train-prompts", "16",
        "--set", "task.heldout_prompts=8", "--set", "evaluation.samples_per_prompt=8",
        "--samples-per-prompt", "4", "--set", "training.batch_size=16",
        "--set", "weighting.train_without_information=true"]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_round_one_trains_on_the_pool_of_rounds_zero_and_one(tmp_path):
    result = bolt("refresh", "--runs-dir", str(tmp_path), "--until-round", "1", *TINY,
                  "--set", "weighting.replay_rounds=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pipeline = tmp_path / "default-refresh"
    assert not (pipeline / "round-0" / "replay_rollouts.parquet").exists()  # nothing before round 0
    round1 = pipeline / "round-1"
    pool = pq.read_table(round1 / "replay_rollouts.parquet")
    own = pq.read_table(round1 / "rollouts.parquet")
    earlier = pq.read_table(pipeline / "round-0" / "rollouts.parquet")
    assert pool.num_rows == own.num_rows + earlier.num_rows == 2 * 16 * 4
    assert sorted(set(pool["round"].to_pylist())) == [0, 1]
    assert len(set(zip(pool["prompt_id"].to_pylist(), pool["sample_idx"].to_pylist()))) == pool.num_rows
    # the earlier round's rows keep their responses
    from_zero = pool.filter(pc.equal(pool["round"], 0)).sort_by([("prompt_id", "ascending"), ("sample_idx", "ascending")])
    earlier = earlier.sort_by([("prompt_id", "ascending"), ("sample_idx", "ascending")])
    assert from_zero["response_token_ids"].to_pylist() == earlier["response_token_ids"].to_pylist()

    logprobs = pq.read_table(round1 / "replay_logprobs.parquet")
    assert logprobs.num_rows == 2 * pool.num_rows  # every pooled response under both samplers
    # a response's log-prob under its own sampler is the one stored when it was drawn
    mine = {(p, s, r): v for p, s, r, v in zip(*(logprobs[c].to_pylist() for c in ("prompt_id", "sample_idx", "round", "logprob")))}
    for p, s, r, stored in zip(*(pool[c].to_pylist() for c in ("prompt_id", "sample_idx", "round", "sampler_logprob"))):
        assert mine[(p, s, r)] == pytest.approx(stored, rel=1e-4, abs=1e-4)

    weights = pq.read_table(round1 / "weights.parquet")
    assert weights.num_rows == pool.num_rows
    stats = pq.read_table(round1 / "prompt_stats.parquet")
    assert set(stats["n"].to_pylist()) == {8}
    summary = json.loads((round1 / "summary.json").read_text())
    assert summary["stage_seconds"]["replay"] > 0
    assert json.loads((pipeline / "round-0" / "summary.json").read_text())["stage_seconds"]["replay"] == 0
