"""The sampler's log-probs are the model's own, and sampling is reproducible."""

import numpy as np
import pyarrow as pa

from bolt_tasks.core.config import SamplingConfig, TaskConfig
from bolt_tasks.policy.logprobs import response_logprobs
from bolt_tasks.policy.modeling import encode_prompts
from bolt_tasks.sampling.decode import generate
from bolt_tasks.sampling.rollouts import sample_rollouts

# Prompts of different lengths: exercises left padding, the attention mask and position ids.
PROMPTS = ["07+85=", "1+2=", "99+99=", "abc def=", "5="]


def test_sampler_logprob_matches_a_separate_forward_pass(tiny_policy):
    model, tokenizer = tiny_policy
    prompts = [ids for ids in encode_prompts(tokenizer, PROMPTS) for _ in range(16)]
    result = generate(model, tokenizer, prompts, 1.0, 6, batch_size=32, seed=0)
    rescored = response_logprobs(model, prompts, result.token_ids, tokenizer.pad_token_id, batch_size=7)
    assert len({len(t) for t in result.token_ids}) > 1, "want responses of several lengths"
    assert np.all(result.logprobs < 0)
    np.testing.assert_allclose(result.logprobs, rescored, atol=1e-4, rtol=0)


def test_prompt_padding_does_not_change_logprobs(tiny_policy):
    model, tokenizer = tiny_policy
    prompts = encode_prompts(tokenizer, PROMPTS)
    together = generate(model, tokenizer, prompts, 1.0, 6, batch_size=len(prompts), seed=3)
    one_at_a_time = [
        response_logprobs(model, [p], [r], tokenizer.pad_token_id)[0]
        for p, r in zip(prompts, together.token_ids)
    ]
    np.testing.assert_allclose(together.logprobs, one_at_a_time, atol=1e-4, rtol=0)


def test_same_seed_same_samples_and_other_seed_differs(tiny_policy):
    model, tokenizer = tiny_policy
    prompts = [ids for ids in encode_prompts(tokenizer, PROMPTS) for _ in range(8)]
    first = generate(model, tokenizer, prompts, 1.0, 6, batch_size=16, seed=7)
    again = generate(model, tokenizer, prompts, 1.0, 6, batch_size=16, seed=7)
    other = generate(model, tokenizer, prompts, 1.0, 6, batch_size=16, seed=8)
    assert first.token_ids == again.token_ids
    np.testing.assert_array_equal(first.logprobs, again.logprobs)
    assert first.token_ids != other.token_ids


def test_rollouts_table_schema_and_reference_logprob(tiny_model_dir, tmp_path):
    prompts = pa.table({
        "prompt_id": ["a", "b", "c"], "prompt": ["07+85=", "1+2=", "x"],
        "answer": ["092", "3", "y"], "split": ["train", "train", "heldout"],
        "difficulty": pa.array([None, None, None], pa.int32()),
    })
    sampling = SamplingConfig(samples_per_prompt=4, max_new_tokens=5, temperature=0.7, seed=1)
    ref = sample_rollouts(prompts, tiny_model_dir, tiny_model_dir, sampling, TaskConfig(), 0, tmp_path / "r.parquet")
    rollouts = ref.read()
    assert rollouts.num_rows == 8
    assert set(rollouts["prompt_id"].to_pylist()) == {"a", "b"}
    assert sorted(rollouts["sample_idx"].to_pylist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert rollouts["num_tokens"].to_pylist() == [len(t) for t in rollouts["response_token_ids"].to_pylist()]
    assert set(rollouts["finish_reason"].to_pylist()) <= {"stop", "length"}
    # At temperature 0.7 the sampler q is not pi_ref: the reference log-prob is pi_ref's own
    # (temperature 1) and must differ from the tempered sampler log-prob.
    sampler, reference = rollouts["sampler_logprob"].to_numpy(), rollouts["reference_logprob"].to_numpy()
    assert np.max(np.abs(sampler - reference)) > 1e-3
