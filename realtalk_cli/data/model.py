"""The typed model of a chat that every command works on.

Field names follow the REALTALK dataset (`dia_id`, `clean_text`, `evidence`, `category`). Strings
that the dataset writes by hand (message and session dates) are kept verbatim so that a chat can be
written back byte for byte; parsed values are offered by methods next to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

Dataset = Literal["realtalk", "locomo", "longmemeval"]

CATEGORY_NAMES: dict[str, dict[int, str]] = {
    "realtalk": {1: "multi-hop", 2: "temporal", 3: "commonsense"},
    "locomo": {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"},
    # LongMemEval names question types, not numbers: numbered here in the order its metrics script prints them
    # (src/evaluation/print_qa_metrics.py), so that reports list them in that order.
    "longmemeval": {
        1: "single-session-user",
        2: "single-session-preference",
        3: "single-session-assistant",
        4: "multi-session",
        5: "temporal-reasoning",
        6: "knowledge-update",
    },
}

CATEGORY_MAP_NOTE = (
    "Categories by LoCoMo's own numbering: 1 multi-hop, 2 temporal, 3 open-domain (REALTALK: commonsense), "
    "4 single-hop, 5 adversarial; mem0's papers number the same questions 1 single-hop, 3 multi-hop, "
    "4 open-domain."
)

LONGMEMEVAL_MAP_NOTE = (
    "LongMemEval question types numbered in the order its metrics script prints them: 1 single-session-user, "
    "2 single-session-preference, 3 single-session-assistant, 4 multi-session, 5 temporal-reasoning, "
    "6 knowledge-update."
)


def category_notes(datasets: set[str]) -> list[str]:
    """The category maps a report over these datasets prints: LoCoMo's numbering, LongMemEval's types."""
    notes = [CATEGORY_MAP_NOTE] if datasets - {"longmemeval"} else []
    return notes + ([LONGMEMEVAL_MAP_NOTE] if "longmemeval" in datasets else [])


# As the papers write them, for tables and plots.
DATASET_NAMES: dict[str, str] = {"realtalk": "REALTALK", "locomo": "LoCoMo", "longmemeval": "LongMemEval"}

_DATE_FORMATS = (
    "%d.%m.%Y, %H:%M:%S",  # REALTALK: 29.12.2023, 22:42:04
    "%d.%m.%Y, %H:%M",
    "%I:%M %p on %d %B, %Y",  # LoCoMo: 1:56 pm on 8 May, 2023
    "%Y-%m-%d %H:%M:%S",
    "%d.%m.%Y",
    "%Y/%m/%d (%a) %H:%M",  # LongMemEval: 2023/05/20 (Sat) 02:21
)

_DIA_ID = re.compile(r"^D(\d+):(\d+)$")


def matches_category(number: object, name: object, wanted: str) -> bool:
    """`--category` as a number (`2`), a name (`temporal`) or both (`2 temporal`), case-insensitive."""
    wanted = " ".join(wanted.lower().split())
    label = f"{number} {name or ''}".strip().lower()
    return wanted in (str(number), str(name or "").lower(), label)


def parse_date(text: str) -> datetime | None:
    """A dataset date string as a datetime, or None when it is in no known format."""
    text = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def dia_id_session(dia_id: str) -> int | None:
    """The session number a `D<session>:<n>` id names, or None for a malformed id."""
    m = _DIA_ID.match(dia_id.strip())
    return int(m.group(1)) if m else None


def person_key(name: str) -> str:
    """People are matched across chats by first name, case-insensitively ('Fahim Khan' = 'Fahim')."""
    return name.strip().split()[0].lower() if name.strip() else name


@dataclass
class Message:
    dia_id: str
    speaker: str
    clean_text: str
    date_time: str = ""
    img_file: list[str] = field(default_factory=list)
    img_url: list[str] = field(default_factory=list)
    blip_caption: str | None = None
    session: int = 0

    @property
    def time(self) -> datetime | None:
        return parse_date(self.date_time)


@dataclass
class Event:
    sub_event: str
    id: str = "E"
    date: str = ""
    caused_by: list[str] = field(default_factory=list)


@dataclass
class Session:
    number: int
    date_time: str
    messages: list[Message] = field(default_factory=list)
    # Events per speaker slot: "agent_a" is speaker_1, "agent_b" speaker_2.
    events: dict[str, list[Event]] = field(default_factory=lambda: {"agent_a": [], "agent_b": []})
    summary: str = ""  # LoCoMo only
    observations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # LoCoMo only

    @property
    def time(self) -> datetime | None:
        return parse_date(self.date_time)


@dataclass
class QAItem:
    question: str
    answer: str | None
    evidence: list[str]
    category: int
    dataset: Dataset = "realtalk"
    adversarial_answer: str | None = None
    # LongMemEval: the instance's id (its chat's name too), the date the question is asked, and the haystack
    # positions (session numbers) of its `answer_session_ids`.
    question_id: str | None = None
    question_date: str | None = None
    answer_sessions: list[int] = field(default_factory=list)

    @property
    def abstention(self) -> bool:
        """A LongMemEval abstention question (unanswerable): its id contains `_abs`, as LongMemEval's code tests."""
        return self.question_id is not None and "_abs" in self.question_id

    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES[self.dataset].get(self.category, f"category-{self.category}")

    @property
    def gold(self) -> str:
        """The answer to score against (LoCoMo keeps adversarial golds elsewhere)."""
        if self.answer is not None:
            return self.answer
        return self.adversarial_answer or ""


@dataclass
class Turn:
    """Consecutive messages of one speaker within a session."""

    speaker: str
    messages: list[Message]

    @property
    def text(self) -> str:
        return "\n".join(m.clean_text for m in self.messages)


@dataclass
class Chat:
    name: str  # file stem, e.g. Chat_1_Emi_Elise
    dataset: Dataset
    speaker_1: str
    speaker_2: str
    sessions: list[Session] = field(default_factory=list)
    qa: list[QAItem] = field(default_factory=list)
    # speaker_3, speaker_4...: group chats converted from a messaging app keep every speaker
    extra_speakers: list[str] = field(default_factory=list)

    @property
    def speakers(self) -> tuple[str, ...]:
        """Every speaker in `name` order: speaker_1, speaker_2, then speaker_3... of a group chat."""
        return (self.speaker_1, self.speaker_2, *self.extra_speakers)

    def messages(self) -> Iterator[Message]:
        for session in self.sessions:
            yield from session.messages

    def message_index(self) -> dict[str, Message]:
        """dia_id -> message; the first one wins where an id repeats."""
        index: dict[str, Message] = {}
        for m in self.messages():
            index.setdefault(m.dia_id.strip(), m)
        return index

    def resolve(self, evidence_id: str) -> Message | None:
        return self.message_index().get(evidence_id.strip())

    def merged_turns(self) -> Chat:
        """The same chat with each turn as one message (texts joined by newlines, the first message's id)."""
        sessions = []
        for session in self.sessions:
            merged = []
            for turn in Chat(self.name, self.dataset, self.speaker_1, self.speaker_2, [session]).turns():
                first = turn.messages[0]
                merged.append(replace(first, clean_text=turn.text))
            sessions.append(replace(session, messages=merged))
        return replace(self, sessions=sessions)

    def turns(self) -> list[Turn]:
        turns: list[Turn] = []
        for session in self.sessions:
            previous: Turn | None = None
            for m in session.messages:
                if previous is not None and previous.speaker == m.speaker:
                    previous.messages.append(m)
                else:
                    previous = Turn(m.speaker, [m])
                    turns.append(previous)
        return turns
