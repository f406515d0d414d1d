"""Response log-probs of a prompt shard are the bits one pass over all prompts computes: shared
prompt prefixes are packed within the same batches of sequences the unshared path uses, whose
boundaries the shards start at (a matmul's rows change in their last bits with the rows beside
them, so packing across those boundaries would make a shard's numbers differ)."""

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bolt_tasks.policy.logprobs import response_logprobs

PAD = 0


def random_llama() -> LlamaForCausalLM:
    # wide enough that the matmuls' blocking, hence their last bits, depends on their row count
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=256, intermediate_size=768, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=PAD, bos_token_id=1, eos_token_id=2, attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


def groups(prompts: int = 6, per_prompt: int = 4) -> tuple[list[list[int]], list[list[int]]]:
    generator = np.random.default_rng(8)  # a draw whose rows pack across batches without the chunking
    prompt_ids, response_ids = [], []
    for _ in range(prompts):
        prompt = generator.integers(3, 97, generator.integers(5, 40)).tolist()
        for _ in range(per_prompt):
            prompt_ids.append(prompt)
            response_ids.append(generator.integers(3, 97, generator.integers(1, 13)).tolist())
    return prompt_ids, response_ids


def test_response_log_probs_of_a_shard_are_those_of_one_pass():
    model, (prompts, responses) = random_llama(), groups()
    whole = response_logprobs(model, prompts, responses, PAD, batch_size=8)
    # shards of 8 and 16 sequences, starting where the batches of 8 do
    parts = [response_logprobs(model, prompts[a:b], responses[a:b], PAD, batch_size=8)
             for a, b in ((0, 8), (8, 24))]
    assert np.array_equal(whole, np.concatenate(parts))
