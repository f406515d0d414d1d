"""Shard plans, part gathering and per-prompt random streams: what makes a sharded round write
the rows of a single pass."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bolt_tasks.core.config import RoundConfig, SamplingConfig, validate_round_config
from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.core.shards import gather_parts, plan_shards
from bolt_tasks.core.storage import write_table_atomic
from bolt_tasks.sampling.backends import TransformersSampler, rows_per_batch
from bolt_tasks.sampling.seeds import prompt_seeds


def spans(plan):
    return [(shard.start, shard.stop) for shard in plan]


def test_shards_are_consecutive_balanced_and_never_empty():
    assert spans(plan_shards(16, 3)) == [(0, 5), (5, 10), (10, 16)]
    assert spans(plan_shards(2, 5)) == [(0, 1), (1, 2)]  # no more shards than prompts
    assert spans(plan_shards(0, 3)) == [(0, 0)]  # one (empty) shard, so one (empty) table
    assert spans(plan_shards(100, 1, prompts_per_shard=30)) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert [shard.name for shard in plan_shards(16, 3)][0] == "shard-00001-of-00003"


def test_shards_start_at_decode_batch_boundaries():
    plan = plan_shards(512, 3, block=128)  # 1024-row batches of 8 samples: 128 prompts each
    assert spans(plan) == [(0, 128), (128, 256), (256, 512)]
    assert all(shard.start % 128 == 0 for shard in plan)
    assert spans(plan_shards(10, 3, block=4)) == [(0, 4), (4, 8), (8, 10)]
    assert spans(plan_shards(100, 1, prompts_per_shard=30, block=8)) == [(0, 24), (24, 48), (48, 72), (72, 100)]


def test_decode_batches_hold_whole_prompts():
    assert rows_per_batch(1024, 8) == 1024
    assert rows_per_batch(1000, 8) == 1000
    assert rows_per_batch(1001, 8) == 1000  # not 1001: a batch would end inside a prompt
    assert rows_per_batch(3, 8) == 2  # several batches per prompt, each ending on its boundary
    assert rows_per_batch(2048, 64) == 2048


def test_gathered_parts_are_the_rows_in_shard_order(tmp_path):
    parts = [write_table_atomic(pa.table({"x": list(range(i * 3, i * 3 + 3))}), tmp_path / f"{i}.parquet")
             for i in range(3)]
    whole = gather_parts(parts, tmp_path / "whole.parquet")
    assert pq.read_table(whole.path)["x"].to_pylist() == list(range(9))
    assert gather_parts(parts[:1], parts[0].path) == parts[0]
    other = write_table_atomic(pa.table({"y": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="do not share one schema"):
        gather_parts([parts[0], other], tmp_path / "mixed.parquet")
    assert not (tmp_path / "mixed.parquet").exists()


def test_a_prompts_samples_do_not_depend_on_the_other_prompts(tiny_model_dir):
    """The same prompt ids and seed give the same responses whether a prompt is sampled with
    all the others or in a shard of its own."""
    prompt_ids = [[1, 4 + i % 10, 5 + i % 7, 30] for i in range(12)]
    keys = [f"prompt-{i}" for i in range(12)]
    sampling = SamplingConfig(samples_per_prompt=4, max_new_tokens=6, batch_size=16, seed=3)
    whole = TransformersSampler().sample(tiny_model_dir, prompt_ids, sampling, seeds=prompt_seeds(3, keys))
    part = TransformersSampler().sample(tiny_model_dir, prompt_ids[4:8], sampling,
                                        seeds=prompt_seeds(3, keys[4:8]))
    assert part.token_ids == whole.token_ids[16:32]
    assert (part.logprobs == whole.logprobs[16:32]).all()
    reseeded = TransformersSampler().sample(tiny_model_dir, prompt_ids[4:8], sampling,
                                            seeds=prompt_seeds(4, keys[4:8]))
    assert reseeded.token_ids != part.token_ids  # the seed matters: the test can fail


def test_sampling_passes_equal_separate_calls(tiny_model_dir):
    # An evaluation draws its temperature-1 samples and its greedy responses in one call.
    prompt_ids = [[1, 4 + i % 10, 5 + i % 7, 30] for i in range(6)]
    seeds = prompt_seeds(3, [f"prompt-{i}" for i in range(6)])
    at_one = SamplingConfig(samples_per_prompt=4, max_new_tokens=6, batch_size=16, seed=3)
    greedy = at_one.model_copy(update={"samples_per_prompt": 1, "temperature": 0.0})
    sampler = TransformersSampler()
    passes = sampler.sample_passes(tiny_model_dir, prompt_ids, [at_one, greedy], seeds=seeds)
    for got, sampling in zip(passes, [at_one, greedy]):
        alone = sampler.sample(tiny_model_dir, prompt_ids, sampling, seeds=seeds)
        assert got.token_ids == alone.token_ids and got.finish_reasons == alone.finish_reasons
        assert (got.logprobs == alone.logprobs).all()
    assert len(passes[1].token_ids) == 6 and passes[0].token_ids[::4] != passes[1].token_ids


def test_scale_out_settings_are_checked():
    with pytest.raises(BoltInputError, match="training.launcher=ray and training.workers"):
        validate_round_config({"training": {"launcher": "torchrun", "nnodes": 2}})
    with pytest.raises(BoltInputError, match="training.launcher=ray and training.workers"):
        validate_round_config({"training": {"rdzv_endpoint": "head:29500"}})
    # saved configurations of the old single-node defaults still load
    assert validate_round_config({"training": {"nnodes": 1, "rdzv_endpoint": None}}).training.workers == 1
    with pytest.raises(BoltInputError, match="launcher=torchrun"):
        validate_round_config({"training": {"nproc_per_node": 2}})
    with pytest.raises(BoltInputError, match="launcher=ray"):
        validate_round_config({"training": {"workers": 2}})
    with pytest.raises(BoltInputError, match="set execution.executor=ray"):
        validate_round_config({"training": {"launcher": "ray", "workers": 2}})
    with pytest.raises(BoltInputError, match="below the 4 training processes"):
        validate_round_config({"training": {"launcher": "ray", "workers": 4, "batch_size": 3},
                               "execution": {"executor": "ray"}})
    ray_training = validate_round_config({"training": {"launcher": "ray", "workers": 4},
                                          "execution": {"executor": "ray"}})
    assert ray_training.training.processes == 4 and ray_training.execution.training_placement == "pack"
    with pytest.raises(BoltInputError, match="lora"):
        validate_round_config({"training": {"launcher": "torchrun", "parallelism": "fsdp",
                                            "lora": {"rank": 4}}})
    with pytest.raises(BoltInputError, match="execution.executor"):
        validate_round_config({"execution": {"executor": "dask"}})
    assert RoundConfig().execution.executor == "local" and RoundConfig().sampling.shards == 1


@pytest.mark.slow
def test_inverse_cdf_draws_follow_the_distribution():
    """The per-row sampler draws each token with its probability (a wrong draw would skew
    every rollout): frequencies of 200,000 draws over 50 tokens within 5 standard errors, and
    a token of probability 0 never drawn."""
    import torch

    from bolt_tasks.sampling.decode import inverse_cdf_sample, row_uniforms

    logits = torch.randn(50, generator=torch.Generator().manual_seed(0)) * 2
    logits[7] = float("-inf")
    logprobs = torch.log_softmax(logits, -1).expand(200_000, 50)
    uniforms = row_uniforms(list(range(200_000)), 1)[:, 0]
    tokens = inverse_cdf_sample(logprobs, uniforms)
    frequencies = torch.bincount(tokens, minlength=50).double() / 200_000
    probabilities = logprobs[0].double().exp()
    standard_errors = (probabilities * (1 - probabilities) / 200_000).sqrt()
    assert frequencies[7] == 0
    assert ((frequencies - probabilities).abs() <= 5 * standard_errors + 1e-12).all()
