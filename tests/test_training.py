"""The weighted-SFT loss is exactly -(sum_i w_i * sum_t log pi(y_it)) / batch size."""

import torch

from bolt_tasks.policy.modeling import encode_prompts


def manual_token_logprobs(model, prompt, response):
    ids = torch.tensor([prompt + response])
    logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return [logprobs[len(prompt) + t - 1, token].item() for t, token in enumerate(response)]


def test_loss_sums_response_tokens_without_length_normalisation(tiny_policy):
    from bolt_tasks.policy.training import weighted_nll

    model, tokenizer = tiny_policy
    prompts = encode_prompts(tokenizer, ["07+85=", "1+2=", "99+99="])
    eos = tokenizer.eos_token_id
    responses = [[3 + 0, 3 + 9, 3 + 2, eos], [3 + 3, eos], [3 + 1, 3 + 9, 3 + 8, 3 + 1, 3 + 2, eos]]
    weights = torch.tensor([0.5, 2.0, 1.25])
    with torch.no_grad():
        loss = weighted_nll(model, prompts, responses, weights, tokenizer.pad_token_id).item()
        token_logprobs = [manual_token_logprobs(model, p, r) for p, r in zip(prompts, responses)]
    summed = -sum(w * sum(lp) for w, lp in zip(weights.tolist(), token_logprobs)) / 3
    length_normalised = -sum(
        w * sum(lp) / len(lp) for w, lp in zip(weights.tolist(), token_logprobs)
    ) / 3
    assert abs(loss - summed) < 1e-4 * abs(summed)
    # The two readings must be far apart for this test to be able to fail.
    assert abs(summed - length_normalised) > 0.5
    assert abs(loss - length_normalised) > 0.5


def test_prompt_tokens_carry_no_loss(tiny_policy):
    """Changing the prompt's own tokens changes the loss only through the conditioning: the loss
    equals the response-token sum whatever the prompt is, never a term for prompt tokens."""
    from bolt_tasks.policy.training import weighted_nll

    model, tokenizer = tiny_policy
    prompt = encode_prompts(tokenizer, ["12+34="])[0]
    response = [3 + 0, 3 + 4, 3 + 6, tokenizer.eos_token_id]
    with torch.no_grad():
        loss = weighted_nll(model, [prompt], [response], torch.tensor([1.0]), tokenizer.pad_token_id)
        full_sequence_nll = -sum(manual_token_logprobs(model, prompt[:1], prompt[1:] + response))
    expected = -sum(manual_token_logprobs(model, prompt, response))
    assert abs(loss.item() - expected) < 1e-4 * abs(expected)
    assert abs(loss.item() - full_sequence_nll) > 1.0


def test_zero_weight_sample_has_no_gradient(tiny_policy):
    from bolt_tasks.policy.training import weighted_nll

    model, tokenizer = tiny_policy
    prompts = encode_prompts(tokenizer, ["1+1="])
    response = [[3 + 2, tokenizer.eos_token_id]]
    model.zero_grad()
    weighted_nll(model, prompts, response, torch.tensor([0.0]), tokenizer.pad_token_id).backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    model.zero_grad()
