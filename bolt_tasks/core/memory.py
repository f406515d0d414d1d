"""What a stage leaves behind in the flow process: no model, and on a GPU no cached memory.

A stage that runs a model in the flow process (inline training, the transformers decode loop, a
log-prob pass) drops its last reference to it when it returns, so the model is freed then. What
stays on a GPU is torch's caching allocator holding the freed blocks: invisible to this process,
but used memory to the next process on the device (a vLLM engine's free-memory check, a
torchrun rank). So after every stage, when CUDA was used, unreachable cycles are collected and
the cache handed back. On a CPU nothing is done: the allocator returns the memory itself, and a
collection of a heap this size costs about a quarter of a second.
"""

from __future__ import annotations

import gc
import sys


def cuda_in_use() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


def release_accelerator_memory() -> None:
    if cuda_in_use():
        gc.collect()
        sys.modules["torch"].cuda.empty_cache()


def live_models() -> list[str]:
    """The modules with parameters this process still holds (parameterless singletons such as
    transformers' activation functions are not models)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    return [type(o).__name__ for o in gc.get_objects()
            if isinstance(o, torch.nn.Module) and next(o.parameters(recurse=False), None) is not None]
