"""A prompt computed once for all of its responses gives the unshared path's numbers: log-probs,
losses and gradients within 1e-5 (float32), and the same sampled rows for the same seeds, on a
random llama (SDPA and eager attention, LoRA, gradient checkpointing) and on the packaged
SmolLM2."""

import copy

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bolt_tasks.core.config import TrainingConfig
from bolt_tasks.policy.logprobs import packed_logprob_sums, pad_prompt_response, response_logprob_sums, response_logprobs
from bolt_tasks.policy.shared_prefix import group_by_prompt, micro_batches, pack, pack_for, split_wide
from bolt_tasks.policy.training import fit, weighted_group_nll, weighted_nll
from bolt_tasks.sampling.decode import generate

PAD = 0


def random_llama(attention: str = "sdpa", seed: int = 0, hidden: int = 64) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=PAD, bos_token_id=1, eos_token_id=2,
                         attn_implementation=attention)
    return LlamaForCausalLM(config).eval()


def random_groups(seed: int, prompts: int = 4, per_prompt: int = 5, longest_prompt: int = 11) -> tuple[list, list]:
    """Prompt-major (prompt ids, response ids) pairs, prompts and responses of varied lengths."""
    generator = np.random.default_rng(seed)
    prompt_ids, response_ids = [], []
    for _ in range(prompts):
        prompt = generator.integers(3, 97, generator.integers(1, longest_prompt + 1)).tolist()
        for _ in range(per_prompt):
            prompt_ids.append(prompt)
            response_ids.append(generator.integers(3, 97, generator.integers(1, 9)).tolist())
    return prompt_ids, response_ids


def unshared_sums(model, prompts, responses) -> torch.Tensor:
    return response_logprob_sums(model, *pad_prompt_response(prompts, responses, PAD, "cpu"))


def shared_sums(model, prompts, responses) -> torch.Tensor:
    """In the callers' order, whatever order the packed groups number them in."""
    groups = group_by_prompt(prompts, responses)
    sums = packed_logprob_sums(model, pack_for(model, groups, PAD))
    order = [i for group in groups for i in group.indices]
    return torch.zeros_like(sums).index_copy(0, torch.tensor(order), sums)


def gradients(model, sums_of, prompts, responses, weights) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (-(weights * sums_of(model, prompts, responses)).sum()).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(model, prompts, responses, elementwise: bool = True) -> None:
    """Every gradient within 1e-5 elementwise, or (elementwise=False, for a deep model whose
    float32 rounding accumulates over its layers) the whole gradient within 1e-5 of its norm."""
    weights = torch.linspace(0.2, 2.0, len(prompts))
    unshared = gradients(model, unshared_sums, prompts, responses, weights)
    shared = gradients(model, shared_sums, prompts, responses, weights)
    assert unshared.keys() == shared.keys() and unshared
    if not elementwise:
        norm = lambda tensors: float(torch.sqrt(sum((t.double() ** 2).sum() for t in tensors)))  # noqa: E731
        error = norm([shared[n] - unshared[n] for n in unshared]) / norm(unshared.values())
        assert error < 1e-5, error
        return
    for name in unshared:
        torch.testing.assert_close(shared[name], unshared[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_logprobs_and_gradients_equal_the_unshared_ones(attention):
    model = random_llama(attention)
    prompts, responses = random_groups(seed=1)
    with torch.no_grad():
        torch.testing.assert_close(shared_sums(model, prompts, responses),
                                   unshared_sums(model, prompts, responses), atol=1e-5, rtol=0)
    model.train()
    assert_same_gradients(model, prompts, responses)


def test_the_mask_keeps_responses_apart():
    """A response's log-prob does not change when the group's other responses do."""
    model = random_llama()
    prompts, responses = random_groups(seed=2, prompts=1, per_prompt=3)
    changed = [responses[0], [5, 6, 7, 8, 9, 10], responses[2]]
    with torch.no_grad():
        first, second = shared_sums(model, prompts, responses), shared_sums(model, prompts, changed)
    torch.testing.assert_close(first[[0, 2]], second[[0, 2]], atol=1e-5, rtol=0)
    assert not torch.isclose(first[1], second[1])


def test_with_lora_and_gradient_checkpointing():
    from peft import LoraConfig, get_peft_model

    model = random_llama()
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    for name, parameter in model.named_parameters():  # LoRA starts at zero: move it off zero
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    model.train()
    assert_same_gradients(model, *random_groups(seed=3))


def test_weighted_group_nll_equals_weighted_nll_over_a_micro_batched_batch():
    model = random_llama().train()
    prompts, responses = random_groups(seed=4, prompts=5, per_prompt=4)
    weights = [0.5 + (i % 3) for i in range(len(prompts))]
    unshared = weighted_nll(model, prompts, responses, torch.tensor(weights), PAD)
    parts = micro_batches([p for g in group_by_prompt(prompts, responses) for p in split_wide(g, 30)], 60)
    assert len(parts) > 1
    shared = sum(weighted_group_nll(model, run, [weights[i] for g in run for i in g.indices], PAD,
                                    len(prompts)) for run in parts)
    torch.testing.assert_close(shared, unshared, atol=1e-5, rtol=1e-6)


def test_a_fit_with_shared_prompts_lands_where_the_unshared_fit_does():
    prompts, responses = random_groups(seed=5, prompts=6, per_prompt=4)
    examples = [(p, r, 0.25 + (i % 4) / 2) for i, (p, r) in enumerate(zip(prompts, responses))]
    fitted = {}
    for share in (False, True):
        model = random_llama(seed=7).train()
        training = TrainingConfig(epochs=2, batch_size=8, learning_rate=1e-3, warmup_steps=1,
                                  share_prompt_prefix=share, max_tokens_per_micro_batch=64)
        log = fit(model, PAD, examples, training)
        fitted[share] = (log["loss"], [p.detach().clone() for p in model.parameters()])
    np.testing.assert_allclose(fitted[True][0], fitted[False][0], rtol=1e-5)
    for shared, unshared in zip(fitted[True][1], fitted[False][1]):
        torch.testing.assert_close(shared, unshared, atol=1e-5, rtol=1e-5)


def test_prompt_groups_order_keeps_each_prompts_rollouts_together():
    from bolt_tasks.policy.training import batch_order

    prompts, responses = random_groups(seed=6, prompts=5, per_prompt=3)
    examples = list(zip(prompts, responses, [1.0] * len(prompts)))
    order = batch_order(examples, TrainingConfig(), torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(len(examples)))
    runs = [tuple(examples[i][0]) for i in order]
    assert len([k for k, previous in zip(runs, [None] + runs) if k != previous]) == 5


def test_response_logprobs_shared_equal_unshared():
    model = random_llama()
    prompts, responses = random_groups(seed=8, prompts=7, per_prompt=6)
    shared = response_logprobs(model, prompts, responses, PAD, batch_size=9)
    unshared = response_logprobs(model, prompts, responses, PAD, batch_size=9, share_prefixes=False)
    np.testing.assert_allclose(shared, unshared, atol=1e-5, rtol=0)


def test_sampling_with_one_prefill_per_prompt_draws_the_same_rows():
    class Tokenizer:
        eos_token_id, pad_token_id = 2, PAD

    model = random_llama()
    prompts = [p for p, _ in zip(*random_groups(seed=9, prompts=6, per_prompt=8))]
    for temperature in (1.0, 0.0):
        shared = generate(model, Tokenizer, prompts, temperature, 7, batch_size=16, seed=3)
        unshared = generate(model, Tokenizer, prompts, temperature, 7, batch_size=16, seed=3,
                            share_prefixes=False)
        assert shared.token_ids == unshared.token_ids and shared.finish_reasons == unshared.finish_reasons
        np.testing.assert_allclose(shared.logprobs, unshared.logprobs, atol=1e-5, rtol=0)


def test_packed_rows_carry_little_padding_when_sorted_by_width():
    prompts, responses = random_groups(seed=10, prompts=12, per_prompt=8)
    groups = group_by_prompt(prompts, responses)
    sorted_runs = micro_batches(groups, 400)
    unsorted = [groups[i : i + len(sorted_runs[0])] for i in range(0, len(groups), len(sorted_runs[0]))]
    share = [np.mean([pack(run, PAD, "cpu").padding_share() for run in runs]) for runs in (sorted_runs, unsorted)]
    assert share[0] < share[1]


@pytest.mark.slow
def test_smollm2_packed_logprobs_and_gradients_equal_the_unshared_ones(smollm2_runs_dir):
    from bolt_tasks.core.catalogue import RunsDirectory
    from bolt_tasks.policy.model_files import converted_model
    from bolt_tasks.policy.modeling import load_policy
    from bolt_tasks.policy.prompting import render_prompts

    runs = RunsDirectory.at(smollm2_runs_dir)
    model, tokenizer = load_policy(str(converted_model(runs, "smollm2-135m-instruct")), torch.device("cpu"))
    _, prompt_ids = render_prompts(tokenizer, ["What is 2 + 3?", "State the final answer: 7 - 4 ="])
    replies = ["The answer is 5.", "5", "It is five, since 2 + 3 = 5.", "The answer is 3.", "3."]
    prompts = [prompt_ids[0]] * 3 + [prompt_ids[1]] * 2
    responses = [tokenizer(r, add_special_tokens=False).input_ids for r in replies]
    global PAD
    PAD, saved = tokenizer.pad_token_id, PAD
    try:
        with torch.no_grad():
            torch.testing.assert_close(shared_sums(model, prompts, responses),
                                       unshared_sums(model, prompts, responses), atol=1e-5, rtol=1e-6)
        model.train()
        # measured: 2.2e-6 of the norm (elementwise up to 2.9e-5 of a tensor's largest entry;
        # reordering the unshared batch alone moves it 1.7e-7)
        assert_same_gradients(copy.deepcopy(model), prompts, responses, elementwise=False)
    finally:
        PAD = saved


def test_response_log_probs_of_a_shard_are_those_of_one_pass():
    """Packed within the batches of sequences the unshared path uses, whose boundaries prompt
    shards start at: a shard computes one pass's bits (a matmul's rows change in their last bits
    with the rows beside them, so packing across those boundaries would move them)."""
    model = random_llama(hidden=256)  # wide enough that the matmuls' blocking depends on their rows
    # a draw whose groups, packed across the batches' boundaries, give other bits (measured)
    prompts, responses = random_groups(seed=0, prompts=6, per_prompt=4, longest_prompt=40)
    whole = response_logprobs(model, prompts, responses, PAD, batch_size=8)
    # shards of 8 and 16 sequences, starting where the batches of 8 do
    parts = [response_logprobs(model, prompts[a:b], responses[a:b], PAD, batch_size=8)
             for a, b in ((0, 8), (8, 24))]
    assert np.array_equal(whole, np.concatenate(parts))


def test_groups_wider_than_a_row_are_split_and_stay_exact(monkeypatch):
    """With rows capped at the widest single sequence every group here is wider than a row:
    log-probs and a fit (no micro-batch budget, so only the cap splits them) still equal the
    unshared ones."""
    from bolt_tasks.policy import shared_prefix

    prompts, responses = random_groups(seed=9, prompts=4, per_prompt=6)
    groups = group_by_prompt(prompts, responses)
    widest = max(len(p) + len(r) for p, r in zip(prompts, responses))
    monkeypatch.setattr(shared_prefix, "MAX_PACKED_WIDTH", widest)
    assert widest < min(group.width for group in groups)
    parts = [part for g in groups for part in split_wide(g, shared_prefix.row_width(widest))]
    assert len(parts) > len(groups) and all(part.width <= widest for part in parts)
    model = random_llama()
    shared = response_logprobs(model, prompts, responses, PAD, batch_size=64)
    unshared = response_logprobs(model, prompts, responses, PAD, batch_size=64, share_prefixes=False)
    np.testing.assert_allclose(shared, unshared, atol=1e-5, rtol=0)
    examples = [(p, r, 0.25 + (i % 4) / 2) for i, (p, r) in enumerate(zip(prompts, responses))]
    fitted = {}
    for share in (False, True):
        model = random_llama(seed=7).train()
        training = TrainingConfig(epochs=1, batch_size=24, learning_rate=1e-3, warmup_steps=1,
                                  share_prompt_prefix=share)
        fit(model, PAD, examples, training)
        fitted[share] = [p.detach().clone() for p in model.parameters()]
    for shared_parameter, unshared_parameter in zip(fitted[True], fitted[False]):
        torch.testing.assert_close(shared_parameter, unshared_parameter, atol=1e-5, rtol=1e-5)
