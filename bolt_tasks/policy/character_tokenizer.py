"""The embedded policy's tokenizer: one token per character, BOS prepended.

`character_backend()` needs only the tokenizers library, so the CLI can check that prompts
are encodable before anything heavy is imported; `character_tokenizer()` wraps it for
transformers.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>"]
CHARACTERS = list(string.digits) + list("+-*=") + [" "] + list(string.ascii_lowercase)


def character_backend() -> Tokenizer:
    """A character outside CHARACTERS cannot be encoded (there is no unknown token)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return backend


def character_tokenizer():
    """The transformers tokenizer; decoding joins characters with nothing between.

    Saved with save_pretrained it reloads through AutoTokenizer. The model beside it must be
    llama-type: a qwen2 config makes transformers swap in Qwen2Tokenizer, which drops spaces.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=character_backend(), bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
