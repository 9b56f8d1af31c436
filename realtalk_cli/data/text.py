"""Plain-text helpers shared by every layer above: lower-cased content words, counted nouns (`1 question`)."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
_STOP = frozenset("a an the and or of to in on at for is are was were be i you he she it we they do did".split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens without a few very common function words."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


_IRREGULAR = {"retry": "retries", "entry": "entries", "summary": "summaries", "person": "people"}


def plural(n: int, noun: str) -> str:
    """`1 question`, `2 questions`, `0 retries`."""
    return f"{n} {noun if n == 1 else _IRREGULAR.get(noun, noun + 's')}"
