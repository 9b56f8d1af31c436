"""The record every EI backend writes, one per message, and what backends share to build it."""

from __future__ import annotations

from dataclasses import dataclass

from realtalk_cli.data.model import Chat, Message

BACKENDS = ("lexicon", "llm", "hf")  # per-message labellers shared with simulate; analyze ei adds "paper"


@dataclass
class Annotation:
    chat: str
    dataset: str
    index: int  # position of the message in the chat
    session: int
    dia_id: str
    speaker: str
    sentiment: str | None = None
    emotion: str | None = None
    reflective: bool | None = None
    grounding: bool | None = None
    empathy: float | None = None  # sum of emotional reaction, interpretation, exploration (0-2 each)
    intimacy: float | None = None  # 0 (not intimate) .. 1 (very intimate)
    backend: str = ""
    unit: str = "messages"  # or "turns": consecutive messages of one speaker merged
    fallbacks: int = 0  # paper backend: classifiers that failed on the message and gave the paper's default


LABEL_KEYS = ("sentiment", "emotion", "reflective", "grounding", "empathy", "intimacy")


def partner_previous(chat: Chat) -> list[str | None]:
    """For each message, the text of the partner's message right before it in the same session."""
    out: list[str | None] = []
    for session in chat.sessions:
        previous: Message | None = None
        for m in session.messages:
            out.append(previous.clean_text if previous is not None and previous.speaker != m.speaker else None)
            previous = m
    return out


def base_annotation(chat: Chat, index: int, m: Message, backend: str) -> Annotation:
    return Annotation(chat.name, chat.dataset, index, m.session, m.dia_id, m.speaker, backend=backend)


def annotate(chat: Chat, i: int, m: Message, backend: str, labels: dict) -> Annotation:
    a = base_annotation(chat, i, m, backend)
    for k in LABEL_KEYS:
        setattr(a, k, labels.get(k))
    return a
