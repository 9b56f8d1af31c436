"""realtalk's own probe prompts: how a chat becomes context (full chat or events, oldest first, cut to the
newest sessions that fit) and the editable answer templates of configs/prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from realtalk_cli.data.model import Chat
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks.prompts import prompt_text, render_message, session_header, text_hash

ContextMode = Literal["full", "events", "retrieval", "bm25", "dense", "hybrid", "memory"]

# Dates written out, never in the DATE lines' raw format (29.12.2023 would score 0 against "29 December 2023").
TEMPORAL_HINT = (
    " Use the DATE of each CONVERSATION to answer with an approximate date,"
    " written with the month in words (e.g. 29 December 2023 or the week before 3 May 2023)."
)
# A LongMemEval question is asked on a date of its own (its `question_date`), after the chat.
QUESTION_DATE = " (Current date: {date}.)"


def render_session(chat: Chat, number: int, mode: ContextMode) -> str:
    s = next(s for s in chat.sessions if s.number == number)
    if mode == "events":
        lines = [
            f"{speaker}: {e.sub_event}"
            for speaker, agent in zip(chat.speakers[:2], ("agent_a", "agent_b"), strict=True)  # events name two
            for e in s.events.get(agent, [])
            if e.sub_event
        ]
        return f"DATE: {s.date_time}\nEVENTS:\n" + "\n".join(lines)
    return session_header(s.date_time) + "\n".join(render_message(m) for m in s.messages)


def render_sessions(chat: Chat, mode: ContextMode, numbers: list[int]) -> str:
    """Sessions oldest first, each once (the paper's own layout is in protocols/paper.py)."""
    return "\n\n".join(render_session(chat, n, mode) for n in numbers)


def fit_sessions(chat: Chat, mode: ContextMode, model: str, budget: int) -> tuple[str, int]:
    """The context, keeping the most recent sessions when the whole chat exceeds `budget` tokens."""
    numbers = [s.number for s in chat.sessions if s.messages or mode == "events"]
    kept = fitted_sessions(chat, mode, model, budget)
    return render_sessions(chat, mode, kept), len(numbers) - len(kept)


def fitted_sessions(chat: Chat, mode: ContextMode, model: str, budget: int) -> list[int]:
    """The numbers of the sessions `fit_sessions` keeps: the oldest dropped one by one until the context fits
    (at least one kept). Counted per session first, so a haystack of 500 sessions costs a few counts, not one per
    dropped session; the whole context's count decides."""
    numbers = [s.number for s in chat.sessions if s.messages or mode == "events"]
    blocks = [render_session(chat, n, mode) for n in numbers]

    def fits(k: int) -> bool:
        text = "\n\n".join(blocks[k:])
        # A token is at least one byte: a context of no more bytes than the budget fits without loading a tokenizer.
        return len(text.encode("utf-8")) <= budget or count_tokens(text, model)[0] <= budget

    if sum(len(b.encode("utf-8")) + 2 for b in blocks) <= budget:
        return numbers
    counts = [count_tokens(b, model)[0] + 1 for b in blocks]  # + the separator: an estimate of the whole
    total, k = sum(counts), 0
    while k < len(numbers) - 1 and total > budget:
        total -= counts[k]
        k += 1
    while k < len(numbers) - 1 and not fits(k):
        k += 1
    while k > 0 and fits(k - 1):
        k -= 1
    return numbers[k:]


@dataclass
class Templates:
    """The answer prompts of configs/prompts (users may edit them; a run's identity records their hashes)."""

    answer: str
    adversarial: str

    @classmethod
    def load(cls) -> Templates:
        return cls(prompt_text("probe_answer.txt"), prompt_text("probe_adversarial.txt"))

    def hashes(self) -> dict[str, str]:
        return {"probe_answer.txt": text_hash(self.answer), "probe_adversarial.txt": text_hash(self.adversarial)}
