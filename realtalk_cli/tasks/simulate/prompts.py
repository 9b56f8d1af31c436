"""Persona-simulation targets and prompts: which messages a person is asked to write, the real history each
prompt shows, the prompt itself, and the same prompts with the real replies as an SFT training file.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtalk_cli.data.model import Chat, Message, person_key
from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.prompts import fill


@dataclass
class Target:
    chat: Chat
    speaker: str
    messages: list[Message]  # one message, or the messages of a merged turn
    position: int  # index in the chat of the first message
    history: list[Message]  # the real messages the prompt shows, oldest first

    @property
    def reference(self) -> str:
        return "\n".join(m.clean_text for m in self.messages)

    @property
    def partner_previous(self) -> str | None:
        last = self.history[-1] if self.history else None
        return last.clean_text if last is not None and last.speaker != self.speaker else None


def matches_speaker(name: str, wanted: str) -> bool:
    """`--speaker Fahim` finds 'Fahim Khan'; case does not matter."""
    return name.strip().lower() == wanted.strip().lower() or person_key(name) == person_key(wanted)


def select_targets(chat: Chat, speaker: str | None, mode: str, window: int) -> list[Target]:
    """Every message (or merged turn) of the target speaker(s) that has history before it."""
    if mode not in ("messages", "turns"):
        raise RealtalkError(f"--targets {mode!r}: choose messages or turns")
    if window < 1:
        raise RealtalkError("--sessions must be at least 1")
    speakers = [s for s in chat.speakers if speaker is None or matches_speaker(s, speaker)]
    messages = list(chat.messages())
    position = {id(m): i for i, m in enumerate(messages)}
    units = [[m] for m in messages] if mode == "messages" else [t.messages for t in chat.turns()]
    targets = []
    for unit in units:
        first = unit[0]
        if first.speaker not in speakers:
            continue
        start = position[id(first)]
        oldest_session = first.session - window + 1
        history = [m for m in messages[:start] if m.session >= oldest_session]
        if history:
            targets.append(Target(chat, first.speaker, unit, start, history))
    return targets


def transcript(chat: Chat, history: list[Message]) -> str:
    dates = {s.number: s.date_time for s in chat.sessions}
    parts: list[str] = []
    session = None
    for m in history:
        if m.session != session:
            session = m.session
            parts.append(("\n" if parts else "") + f"DATE: {dates.get(session, '')}")
        parts.append(f"{m.speaker}: {m.clean_text}")
    return "\n".join(parts)


def prompt_messages(target: Target, system_template: str) -> list[dict]:
    return [
        {"role": "system", "content": fill(system_template, speaker=target.speaker)},
        # The paper's user turn ends with a cue naming the target speaker (PAPER_PROTOCOL.md §3).
        {"role": "user", "content": transcript(target.chat, target.history) + f"\n{target.speaker}:"},
    ]


def target_key(row_or_target) -> tuple[str, int]:
    """(chat, position): a target and its predictions row share it."""
    if isinstance(row_or_target, dict):
        return (row_or_target["chat"], row_or_target["position"])
    return (row_or_target.chat.name, row_or_target.position)
