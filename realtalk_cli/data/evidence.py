"""Evidence ids of QA items: the one parser for every form the datasets use, and their resolution.

The files write ids by hand, so one `evidence` entry may hold several ids or be malformed:
`D8:6; D9:17`, `D13:4. D14:4`, `D22:1 D22:2`, `D 2:18`, `D:11:26`, `D17;39` (semicolon for colon),
`23:29` (no D), `D20:17.`, ranges `D12:3-D12:5` or `D12:3-5`, and pieces that are no id at all (`D`).
Every id is written back as `D<session>:<message>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from realtalk_cli.data.model import Chat

# D, optional spaces or a stray colon, session, ':' or ';', message; optionally '-' and a range end.
_ID = re.compile(
    r"D?\s*:?\s*(?P<s>\d+)\s*[:;]\s*(?P<m>\d+)"
    r"(?:\s*-\s*(?:D?\s*(?P<s2>\d+)\s*[:;]\s*)?(?P<m2>\d+))?"
)
_SEPARATORS = re.compile(r"[\s;,.]+")


@dataclass
class Evidence:
    ids: list[str] = field(default_factory=list)  # canonical ids, in order, each once
    unparsed: list[str] = field(default_factory=list)  # pieces that are no id (e.g. "D")


def parse_evidence(values: Iterable[str]) -> Evidence:
    """Canonical ids from the raw `evidence` entries of one QA item."""
    out = Evidence()
    for value in values:
        rest, position = [], 0
        for m in _ID.finditer(value):
            rest.append(value[position : m.start()])
            position = m.end()
            session, first = int(m["s"]), int(m["m"])
            end_session = int(m["s2"]) if m["s2"] else session
            last = int(m["m2"]) if m["m2"] else first
            if end_session != session or last < first:  # a range across sessions cannot be expanded
                out.unparsed.append(m.group(0).strip())
                continue
            for n in range(first, last + 1):
                canonical = f"D{session}:{n}"
                if canonical not in out.ids:
                    out.ids.append(canonical)
        rest.append(value[position:])
        out.unparsed.extend(piece for piece in _SEPARATORS.split(" ".join(rest)) if piece)
    return out


@dataclass
class ResolvedEvidence:
    resolved: list[str]  # ids of messages that exist in the chat
    dangling: list[str]  # ids that name no message, and pieces that are no id

    @property
    def count(self) -> int:
        return len(self.resolved) + len(self.dangling)


def resolve_evidence(chat: Chat, values: Iterable[str], index: dict | None = None) -> ResolvedEvidence:
    """Which of a QA item's evidence ids point to a message of `chat` (pass `chat.message_index()` when looping)."""
    known = index if index is not None else chat.message_index()
    parsed = parse_evidence(values)
    resolved = [i for i in parsed.ids if i in known]
    return ResolvedEvidence(resolved, [i for i in parsed.ids if i not in known] + parsed.unparsed)
