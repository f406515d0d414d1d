"""Long responses within memory: chunked log-probs equal the unchunked computation, and the fit
does not depend on how an optimizer batch is cut into micro-batches."""

import pyarrow as pa
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bolt_tasks.core.config import LoraConfig, TrainingConfig
from bolt_tasks.policy import logprobs
from bolt_tasks.policy.logprobs import pad_prompt_response, response_logprob_sums
from bolt_tasks.policy.training import micro_batches, train_policy

VOCABULARY = 49_152  # SmolLM2's


@pytest.fixture(scope="module")
def wide_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCABULARY, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def unchunked(model, ids, attention, response_mask):
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * response_mask[:, 1:]).sum(-1)


@pytest.mark.slow
def test_chunked_logprobs_of_a_large_vocabulary_equal_the_whole_computation(wide_model, monkeypatch):
    generator = torch.Generator().manual_seed(1)
    lengths = [(12, 700), (40, 300), (5, 520)]  # (prompt, response) tokens
    prompts = [torch.randint(0, VOCABULARY, (p,), generator=generator).tolist() for p, _ in lengths]
    responses = [torch.randint(0, VOCABULARY, (r,), generator=generator).tolist() for _, r in lengths]
    batch = pad_prompt_response(prompts, responses, 0, "cpu")
    with torch.no_grad():
        expected = unchunked(wide_model, *batch)
        monkeypatch.setattr(logprobs, "LOGIT_BUDGET", 3 * 64 * VOCABULARY)  # 64 positions a chunk
        chunked = response_logprob_sums(wide_model, *batch)
    assert chunked.shape == (3,) and (expected < -1000).all()
    assert torch.allclose(chunked, expected, rtol=1e-5, atol=0), (chunked - expected).abs().max()
    # and differentiable, with the same gradient as the whole computation
    wide_model.zero_grad()
    response_logprob_sums(wide_model, *batch).sum().backward()
    chunked_grad = wide_model.model.embed_tokens.weight.grad.clone()
    wide_model.zero_grad()
    unchunked(wide_model, *batch).sum().backward()
    whole_grad = wide_model.model.embed_tokens.weight.grad
    assert (chunked_grad - whole_grad).abs().max() < 1e-5 * whole_grad.abs().max()


def test_micro_batches_respect_the_token_budget():
    examples = [([1] * 3, [2] * n, 1.0) for n in (2, 9, 4, 4, 1)]  # lengths 5, 12, 7, 7, 4
    runs = micro_batches(examples, 16)
    # longest first: 12 alone; 7, 7 = 14; then 5, 4 = 10 (three of 7 would be 21)
    assert [[len(p) + len(r) for p, r, _ in run] for run in runs] == [[12], [7, 7], [5, 4]]
    assert sorted(map(str, sum(runs, []))) == sorted(map(str, examples))
    assert micro_batches(examples, None) == [examples]


def _one_step(tiny_model_dir, tmp_path, max_tokens, lora=None):
    rollouts = pa.table({
        "prompt_id": [f"p{i // 2}" for i in range(8)], "sample_idx": pa.array([i % 2 for i in range(8)], pa.int32()),
        "prompt_token_ids": [[1, 4 + i % 3, 5, 6] for i in range(8)],
        "response_token_ids": [[7 + i] * (1 + i) + [2] for i in range(8)],
    })
    weights = pa.table({"prompt_id": rollouts["prompt_id"], "sample_idx": rollouts["sample_idx"],
                        "weight": [0.5, 1.5, 1.0, 0.25, 2.0, 1.0, 0.75, 1.0]})
    training = TrainingConfig(epochs=1, batch_size=8, learning_rate=1e-3, warmup_steps=0,
                              max_tokens_per_micro_batch=max_tokens, lora=lora)
    out = tmp_path / f"policy-{max_tokens}"
    log = train_policy(rollouts, weights, tiny_model_dir, training, out, tmp_path / f"log-{max_tokens}.parquet")
    model = LlamaForCausalLM.from_pretrained(out)
    return {name: p.detach() for name, p in model.named_parameters()}, log.read()["loss"][0].as_py()


def test_the_fit_does_not_depend_on_the_micro_batch_size(tiny_model_dir, tmp_path):
    # budgets that give micro-batches of 1 sequence, about 2, and all 8 (the longest is 13 tokens)
    whole, whole_loss = _one_step(tiny_model_dir, tmp_path, None)
    for budget in (13, 26):
        parameters, loss = _one_step(tiny_model_dir, tmp_path, budget)
        assert loss == pytest.approx(whole_loss, rel=1e-6)
        worst = max((parameters[name] - whole[name]).abs().max().item() for name in whole)
        assert worst < 1e-5, (budget, worst)
    start = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    moved = max((whole[name] - p.detach()).abs().max().item() for name, p in start.named_parameters())
    assert moved > 1e-4  # the step did move the policy: the comparison can fail


def test_lora_saves_an_ordinary_merged_checkpoint(tiny_model_dir, tmp_path):
    parameters, _ = _one_step(tiny_model_dir, tmp_path, None, LoraConfig(rank=4, alpha=8))
    assert not any("lora" in name for name in parameters)  # merged, no adapter weights left
    start = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    changed = [name for name, p in start.named_parameters()
               if (parameters[name] - p.detach()).abs().max().item() > 0]
    assert changed and all("q_proj" in name or "v_proj" in name for name in changed), changed


def test_a_response_ends_at_its_first_stop_string(tiny_policy):
    from bolt_tasks.policy.modeling import encode_prompts
    from bolt_tasks.sampling.decode import decode_responses, generate

    model, tokenizer = tiny_policy
    prompts = encode_prompts(tokenizer, ["12+34=", "7+8=", "99+1="]) * 4
    free = generate(model, tokenizer, prompts, 1.0, 12, 16, seed=3)
    stopped = generate(model, tokenizer, prompts, 1.0, 12, 16, seed=3, stop=["5", "a"])
    cut = 0
    for whole, part, reason in zip(free.token_ids, stopped.token_ids, stopped.finish_reasons):
        assert whole[: len(part)] == part  # the same draws, ended earlier
        text, whole_text = decode_responses(tokenizer, [part, whole])
        first = min((whole_text.find(s) for s in ("5", "a") if s in whole_text), default=-1)
        if first >= 0 and (tokenizer.eos_token_id not in whole or
                           first < len(decode_responses(tokenizer, [whole[: whole.index(tokenizer.eos_token_id)]])[0])):
            assert reason == "stop" and text == whole_text[: first + 1], (whole_text, text)
            cut += len(part) < len(whole)
        else:
            assert part == whole
    assert cut > 0  # some responses did hold a stop string: the test can fail


def test_finished_rows_leave_the_decode_batch(tiny_policy):
    """A row that has stopped is dropped from the batch (and its KV cache): later steps run only
    the unfinished rows, and each response is the one it would be sampled alone."""
    from bolt_tasks.policy.modeling import encode_prompts
    from bolt_tasks.sampling.decode import generate

    model, tokenizer = tiny_policy
    prompts = encode_prompts(tokenizer, ["12+34=", "7+8=", "99+1=", "5+5="]) * 3
    rows_per_step = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_step.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True)
    try:
        together = generate(model, tokenizer, prompts, 1.0, 12, len(prompts), seed=3, stop=["5", "a"])
    finally:
        hook.remove()
    lengths = [len(ids) for ids in together.token_ids]
    # step t (after the prefill) runs the rows whose responses are longer than t tokens
    expected = [len(set(map(tuple, prompts)))] + [sum(n > t for n in lengths) for t in range(1, max(lengths))]
    assert rows_per_step == expected
    assert min(lengths) < max(lengths)  # some rows did finish early: the test can fail
    seeds = list(range(len(prompts)))
    together = generate(model, tokenizer, prompts, 1.0, 12, len(prompts), seed=seeds, stop=["5", "a"])
    alone = [generate(model, tokenizer, [p], 1.0, 12, 1, seed=[s], stop=["5", "a"])
             for p, s in zip(prompts, seeds)]
    assert together.token_ids == [a.token_ids[0] for a in alone]
    assert together.finish_reasons == [a.finish_reasons[0] for a in alone]
    torch.testing.assert_close(torch.tensor(together.logprobs),
                               torch.tensor([a.logprobs[0] for a in alone]), atol=1e-5, rtol=0)
