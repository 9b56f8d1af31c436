"""Plain-text helpers shared by retrieval and analysis: lower-cased content words."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
_STOP = frozenset("a an the and or of to in on at for is are was were be i you he she it we they do did".split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens without a few very common function words."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]
