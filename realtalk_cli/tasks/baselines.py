"""Offline baselines: answerers that need no network or key, registered as `offline:NAME` models.

They read only the prompt a real model would see, so they run through the same client, cache and
reports as any endpoint and give a floor to compare models against.
"""

from __future__ import annotations

import re

from realtalk_cli.llm.providers import register_local_model
from realtalk_cli.tasks.retrieval import BM25


def bm25_line(messages: list[dict]) -> str:
    """`offline:bm25`: the line of the prompt that best matches its last question line."""
    lines = [ln for m in messages for ln in m["content"].splitlines() if ln.strip()]
    question_lines = [i for i, ln in enumerate(lines) if "?" in ln]
    if not question_lines:
        return ""
    q = question_lines[-1]
    candidates = [ln for i, ln in enumerate(lines) if i != q and ":" in ln]
    if not candidates:
        return ""
    best = candidates[BM25(candidates).top(lines[q], 1)[0]]
    # Answer with the message itself, without the speaker (and date) before it.
    quoted = re.search(r'said, "(.*)"', best)
    return quoted.group(1) if quoted else best.split(": ", 1)[-1].strip()


register_local_model("bm25", bm25_line)
