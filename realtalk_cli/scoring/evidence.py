"""Evidence recall: the share of a question's resolvable evidence messages that a context showed."""

from __future__ import annotations

from collections.abc import Iterable


def evidence_recall(resolved: list[str], found: Iterable[str]) -> float | None:
    """Share of the resolvable evidence ids among `found`; None when the item has no resolvable evidence."""
    if not resolved:
        return None
    found = set(found)
    return sum(i in found for i in resolved) / len(resolved)
