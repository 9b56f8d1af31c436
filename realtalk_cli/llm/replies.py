"""What comes back from an endpoint, checked before anything uses it: the reply parser and error-text redaction.

Nothing of a reply is trusted; a body that is not a usable chat completion raises `BadReply`, which the
client (live) and the batch collector (batch output lines) turn into an error for that item.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

MAX_USAGE_TOKENS = 10_000_000  # more than any context window: a broken counter, never a real bill


class BadReply(Exception):
    """The endpoint answered, but not with a usable chat completion."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


@dataclass
class Reply:
    text: str
    prompt_tokens: int | None  # None: the endpoint sent no usage
    completion_tokens: int | None
    cached_tokens: int = 0
    cached_tokens_ignored: object = None  # the odd count given, flagged on the row


def parse_reply(raw: bytes, secrets: Iterable[str] = ()) -> Reply:
    """The text and token counts of a chat-completion body; BadReply for anything else.

    Nothing of a reply is trusted: the body may be HTML, truncated, a list; the content may be missing,
    null, empty or not text; usage may be negative, text or absurd. `secrets` (the API key) are taken out of
    the text and of what an error quotes, before anything is cut short (a cut key would no longer be found).
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        start = redact(raw[:4096].decode("utf-8", "replace"), secrets)[:40].strip()
        raise BadReply(f"reply is not JSON (starts {start!r})" if start else "empty reply body") from None
    if not isinstance(body, dict):
        raise BadReply(f"reply is a JSON {type(body).__name__}, not an object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadReply("reply has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise BadReply("reply has no message")
    content = message.get("content")
    if not isinstance(content, str):
        kind = "no content" if content is None else f"content that is a {type(content).__name__}, not text"
        raise BadReply(f"reply has {kind}")
    content = without_secrets(content, secrets)
    if not content.strip():
        raise BadReply(f"reply content is empty (finish_reason {choices[0].get('finish_reason')!r})", retry=False)
    usage = body.get("usage")
    if usage is None:
        return Reply(content, None, None)
    if not isinstance(usage, dict):
        raise BadReply("reply usage is not an object")
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        n = usage.get(name, 0 if name == "completion_tokens" else None)
        if type(n) is not int or not 0 <= n <= MAX_USAGE_TOKENS:
            raise BadReply(f"reply usage {name} is {n!r}, not a token count")
        counts.append(n)
    cached = _cached_tokens(usage, counts[0])
    details = usage.get("prompt_tokens_details")
    given = details.get("cached_tokens") if isinstance(details, dict) else None
    if given is None or (type(given) is int and given == cached):
        return Reply(content, counts[0], counts[1], cached)
    # a count that cannot be true is billed in full (never a credit) and flagged on the row
    return Reply(
        content, counts[0], counts[1], cached, given if isinstance(given, (int, float, str)) else repr(given)[:80]
    )


def is_json(text: str) -> bool:
    """Whether a reply's text parses as JSON: the paper's scripts ask again until it does (JSON mode)."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _cached_tokens(usage: dict, prompt_tokens: int) -> int:
    """usage.prompt_tokens_details.cached_tokens; anything odd counts as nothing cached (billed in full)."""
    details = usage.get("prompt_tokens_details")
    n = details.get("cached_tokens") if isinstance(details, dict) else None
    return n if type(n) is int and 0 <= n <= prompt_tokens else 0


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Error text from a server without the API key or any bearer token in it."""
    return re.sub(r"(?i)bearer\s+\S+", "Bearer [redacted]", without_secrets(text, secrets))


FRAGMENT = 8  # this many characters of a key in a row are taken out too (a key cut short, masked or %-encoded)


def without_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every API key in it replaced, and every run of FRAGMENT or more of a key's characters in a
    row (an endpoint that echoes a key shortened, masked or split); other words are left as they are."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
            if len(secret) > FRAGMENT:
                text = _without_fragments(text, secret)
    return text


def _without_fragments(text: str, secret: str) -> str:
    find, parts, at = _fragment_pattern(secret), [], 0
    while (found := find.search(text, at)) is not None:
        end = found.end()
        while end < len(text) and text[found.start() : end + 1] in secret:
            end += 1
        parts += [text[at : found.start()], "[redacted]"]
        at = end
    return "".join(parts) + text[at:] if parts else text


@functools.lru_cache(maxsize=8)
def _fragment_pattern(secret: str) -> re.Pattern:
    grams = sorted({secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)})
    return re.compile("|".join(map(re.escape, grams)))
