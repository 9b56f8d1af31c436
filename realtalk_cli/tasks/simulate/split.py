"""Persona-simulation splits: which chat, and which sessions of it, each person is tested on.

- `all` (default): every message (or turn) of the chosen speaker(s) in every chat given.
- `paper`: the paper's test set (Table 8, as quoted in shared/PAPER_PROTOCOL.md §3, second-hand): each
  person is tested on one designated chat, the one where their EI is lower (the paper fine-tunes on
  their other chat), over its first 3 sessions; scores are aggregated per person over that chat only.
  The sources here name one designation: Emi is tested on Chat_1 (and trains on Chat_4). The other
  people's test chats are not in them, so `paper` leaves those people out and the report lists them;
  a split file supplies the rest.
- a TOML file: `[test_chats]` person = chat name prefix (`emi = "Chat_1"`), optional `sessions = 3`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from realtalk_cli.data.formats import chat_file_stem
from realtalk_cli.data.model import Chat, person_key
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import parse_toml, read_regular

PAPER_TEST_CHATS = {"emi": "Chat_1"}  # PAPER_PROTOCOL.md §3: "Emi trains on Chat_4 and tests on Chat_1"
PAPER_TEST_SESSIONS = 3


@dataclass
class Split:
    name: str
    test_chats: dict[str, str] = field(default_factory=dict)  # person key -> chat name prefix; empty: all
    sessions: int | None = None  # only the first N sessions of a test chat
    sha256: str | None = None  # a split file's content, part of the run's identity

    def includes(self, chat: Chat, speaker: str) -> bool:
        """Whether `speaker`'s messages in `chat` are test targets."""
        if self.name == "all":
            return True
        wanted = self.test_chats.get(person_key(speaker))
        name = chat_file_stem(chat.name)  # a chat's id may carry its folder (two chats of one name)
        return wanted is not None and (name == wanted or name.startswith(wanted + "_"))

    def includes_session(self, number: int) -> bool:
        return self.sessions is None or number <= self.sessions

    def undesignated(self, chats: list[Chat]) -> list[str]:
        """People in the chats whom the split gives no test chat (left out of a `paper` run)."""
        if self.name == "all":
            return []
        people = {person_key(s) for c in chats for s in c.speakers}
        return sorted(people - set(self.test_chats))


def load_split(value: str) -> Split:
    """`all`, `paper`, or a TOML split file."""
    if value == "all":
        return Split("all")
    if value == "paper":
        return Split("paper", dict(PAPER_TEST_CHATS), PAPER_TEST_SESSIONS)
    path = Path(value)
    if not path.suffix == ".toml":
        raise RealtalkError(f"--split {value!r}: choose all, paper, or a .toml split file")
    try:
        raw = read_regular(path)  # read once: the bytes parsed are the bytes hashed
    except FileNotFoundError:
        raise RealtalkError(f"--split {path}: no such file") from None
    conf = parse_toml(raw, path)
    chats = conf.get("test_chats")
    if not isinstance(chats, dict) or not all(isinstance(v, str) and v for v in chats.values()):
        raise RealtalkError(f'{path}: expected a [test_chats] table of person = "Chat_N"')
    sessions = conf.get("sessions")
    if sessions is not None and (not isinstance(sessions, int) or isinstance(sessions, bool) or sessions < 1):
        raise RealtalkError(f"{path}: sessions = {sessions!r}: expected a positive integer")
    digest = hashlib.sha256(raw).hexdigest()
    return Split(str(path), {person_key(k): v for k, v in chats.items()}, sessions, digest)
