"""Chat-app exports -> Chat: the record every export reader produces (`Post`), and what turns posts into a
REALTALK chat: time order, speakers, sessions (calendar days, or a silence of `--session-gap` hours), dia_ids.

One module per app reads its files (`whatsapp`, `telegram`, `discord`, `messenger`) into an `Export`; this
module knows nothing of any app. Times are naive datetimes: the wall clock the export writes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from realtalk_cli.data.model import Chat, Message, Session
from realtalk_cli.errors import RealtalkError

FORMATS = ("xlsx", "whatsapp", "telegram", "discord", "messenger")
DATE_FORMAT = "%d.%m.%Y, %H:%M:%S"

# Placeholders that have an author but carry nothing the person wrote. Each kind is kept or dropped as a
# whole; all four are dropped (counted in the summary): a deleted message's notice is not speech, and
# feeding "This message was deleted" to the EI metrics as text would be wrong.
PLACEHOLDER_KINDS = {
    "deleted": "deleted and unsent messages",
    "call": "call notices (missed calls, call summaries)",
    "view_once": "view-once media (Android writes 'null')",
    "poll": "polls without text",
}


@dataclass
class Media:
    """A picture, video, sticker, voice note or document: its file name, or the export's placeholder text when
    the file is not in the export; `read` gives the bytes when the export holds the file."""

    name: str
    read: Callable[[], bytes] | None = None


@dataclass(slots=True)
class Post:
    """One message as an export has it."""

    time: datetime
    author: str  # the name people see
    key: str  # who it is: the app's user id where it has one, else the name
    text: str
    media: list[Media] = field(default_factory=list)
    where: str = ""  # "line 12", "messages[3]": for messages that point back into the export
    bot: bool = False


@dataclass
class Export:
    """What a reader found in one export: the posts, and everything it did not keep, counted."""

    format: str
    posts: list[Post] = field(default_factory=list)
    system: int = 0  # system lines / service entries: not messages
    dropped: Counter = field(default_factory=Counter)  # placeholder kind -> count
    unparsed: list[tuple[str, str]] = field(default_factory=list)  # (where, text) of what fits no rule
    names: list[str] = field(default_factory=list)  # other names of the people (nicknames, non-speakers)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    source: str
    format: str
    output: str = ""
    speakers: list[str] = field(default_factory=list)
    sessions: int = 0
    messages: int = 0
    media: int = 0
    media_copied: int = 0
    system_skipped: int = 0
    placeholders_dropped: dict[str, int] = field(default_factory=dict)
    unparsed_lines: int = 0
    unparsed: list[dict] = field(default_factory=list)  # {"where": "line 7", "text": "..."}
    bots: list[str] = field(default_factory=list)
    anonymized: bool = False
    anonymize_map: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class Built:
    chat: Chat
    media: list[tuple[Message, list[Media]]]  # the files behind each message's img_file, in order
    bots: list[str]


def build_chat(export: Export, source: Path, name: str, session_gap_hours: float | None = None) -> Built:
    """Posts in time order (stable: equal times keep the export's order) -> sessions of messages."""
    if not export.posts:
        raise RealtalkError(f"{source}: no messages found in this {_label(export.format)} export")
    posts = sorted(export.posts, key=lambda p: p.time)
    names = _speaker_names(posts)
    speakers = list(dict.fromkeys(names[p.key] for p in posts))
    if len(speakers) < 2:
        who = f"only {speakers[0]!r}" if speakers else "nobody"
        raise RealtalkError(f"{source}: {who} wrote in this chat; a conversation needs at least two speakers")
    gap = timedelta(hours=session_gap_hours) if session_gap_hours is not None else None
    sessions: list[Session] = []
    media: list[tuple[Message, list[Media]]] = []
    previous: datetime | None = None
    for p in posts:
        new = previous is None or (p.time - previous > gap if gap is not None else p.time.date() != previous.date())
        if new:
            sessions.append(Session(number=len(sessions) + 1, date_time=p.time.strftime(DATE_FORMAT)))
        previous = p.time
        session = sessions[-1]
        message = Message(
            dia_id=f"D{session.number}:{len(session.messages) + 1}",
            speaker=names[p.key],
            clean_text=p.text,
            date_time=_stamp(p.time),
            img_file=[m.name for m in p.media],
            img_url=urls(p.text),
            session=session.number,
        )
        session.messages.append(message)
        if p.media:
            media.append((message, p.media))
    chat = Chat(name, "realtalk", speakers[0], speakers[1], sessions, [], extra_speakers=speakers[2:])
    bots = list(dict.fromkeys(names[p.key] for p in posts if p.bot))
    return Built(chat, media, bots)


def _stamp(t: datetime) -> str:
    """`DATE_FORMAT`, written out (strftime is the slowest step on a large chat)."""
    return f"{t.day:02d}.{t.month:02d}.{t.year:04d}, {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _speaker_names(posts: list[Post]) -> dict[str, str]:
    """key -> the name shown: the first name a person wrote under; two people of one name are told apart."""
    names: dict[str, str] = {}
    taken: Counter = Counter()
    for p in posts:
        if p.key not in names:
            base = p.author.strip() or "Unknown"
            taken[base] += 1
            names[p.key] = base if taken[base] == 1 else f"{base} ({taken[base]})"
    return names


_URL = re.compile(r"https?://\S+")


def urls(text: str) -> list[str]:
    return _URL.findall(text) if "http" in text else []


def _label(fmt: str) -> str:
    return {"whatsapp": "WhatsApp", "telegram": "Telegram", "discord": "Discord", "messenger": "Messenger"}.get(
        fmt, fmt
    )


def report_for(export: Export, built: Built, source: Path) -> ExportReport:
    chat = built.chat
    return ExportReport(
        source=str(source),
        format=export.format,
        speakers=list(chat.speakers),
        sessions=len(chat.sessions),
        messages=sum(len(s.messages) for s in chat.sessions),
        media=len(built.media),
        system_skipped=export.system,
        placeholders_dropped={k: export.dropped[k] for k in PLACEHOLDER_KINDS if export.dropped[k]},
        unparsed_lines=len(export.unparsed),
        unparsed=[{"where": w, "text": t} for w, t in export.unparsed],
        bots=built.bots,
        warnings=list(export.warnings),
    )
