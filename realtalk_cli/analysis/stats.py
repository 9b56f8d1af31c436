"""Descriptive statistics of chats (REALTALK, LoCoMo and LongMemEval alike).

Figures are computed from exact values and rounded once, where they are stored. A total row says how it
aggregates (`aggregation`): counts are sums, `days_spanned` is the mean per chat, per-session figures and
gaps pool every session of its chats. A LongMemEval file is one row, its instances' haystacks pooled the same
way (so `tokens` is about what one full-context run sends), read one instance at a time.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from realtalk_cli.data.formats import iter_chats
from realtalk_cli.data.model import DATASET_NAMES, Chat
from realtalk_cli.llm.tokens import count_tokens

TOKEN_MODEL = "gpt-4o"  # o200k_base; counts are exact and offline
TOTAL_AGGREGATION = "counts: sum over chats; days_spanned: mean per chat; per-session and gap figures: all sessions"


@dataclass
class ChatStats:
    chat: str
    dataset: str
    sessions: int = 0
    messages: int = 0
    turns: int = 0
    words: int = 0
    tokens: int = 0
    pictures: int = 0
    events: int = 0
    qa: int = 0
    qa_by_category: dict[str, int] = field(default_factory=dict)  # "1 multi-hop" -> count
    days_spanned: float | None = None
    messages_per_session_mean: float | None = None
    messages_per_session_min: int | None = None
    messages_per_session_max: int | None = None
    gap_hours_mean: float | None = None
    gap_hours_median: float | None = None
    gap_hours_max: float | None = None
    speakers: int = 0  # group chats converted from an app have more than two
    aggregation: str | None = None  # a total row: how its figures aggregate the chats'
    # kept exact for the total row and plots; not printed per chat
    session_lengths: list[int] = field(default_factory=list, repr=False)
    gaps_hours: list[float] = field(default_factory=list, repr=False)
    spans_days: list[float] = field(default_factory=list, repr=False)

    def row(self) -> dict:
        """Flat values for tables and CSV."""
        d = asdict(self)
        for kept in ("session_lengths", "gaps_hours", "spans_days"):
            d.pop(kept)
        if d["aggregation"] is None:
            d.pop("aggregation")
        by_cat = d.pop("qa_by_category")
        d.update({f"qa {k}": v for k, v in sorted(by_cat.items(), key=_category_order)})
        return d


def _category_order(item: tuple[str, int]) -> tuple:
    number, _, name = item[0].partition(" ")
    return (int(number) if number.isdigit() else 99, name)


def _picture_count(chat: Chat) -> int:
    count = 0
    for m in chat.messages():
        names = {re.sub(r"(_opt)?\.jpe?g$", "", f) for f in m.img_file}
        count += len(names) if names else len(m.img_url) if chat.dataset == "locomo" else 0
    return count


def _session_start(chat: Chat, i: int) -> datetime | None:
    return chat.sessions[i].time


def _session_end(chat: Chat, i: int) -> datetime | None:
    times = [m.time for m in chat.sessions[i].messages if m.time is not None]
    return max(times) if times else chat.sessions[i].time


def chat_stats(chat: Chat) -> ChatStats:
    s = ChatStats(chat=chat.name, dataset=chat.dataset)
    s.sessions = len(chat.sessions)
    s.speakers = len(chat.speakers)
    messages = list(chat.messages())
    s.messages = len(messages)
    s.turns = len(chat.turns())
    s.words = sum(len(m.clean_text.split()) for m in messages)
    s.tokens = sum(count_tokens(m.clean_text, TOKEN_MODEL)[0] for m in messages)
    s.pictures = _picture_count(chat)
    s.events = sum(1 for ses in chat.sessions for evs in ses.events.values() for e in evs if e.sub_event.strip())
    s.qa = len(chat.qa)
    for q in chat.qa:
        key = f"{q.category} {q.category_name}"
        s.qa_by_category[key] = s.qa_by_category.get(key, 0) + 1
    s.session_lengths = [len(ses.messages) for ses in chat.sessions]
    starts = [_session_start(chat, i) for i in range(len(chat.sessions))]
    ends = [_session_end(chat, i) for i in range(len(chat.sessions))]
    known = [t for t in starts + ends if t is not None]
    if known:
        s.spans_days = [(max(known) - min(known)).total_seconds() / 86400]
    for i in range(1, len(chat.sessions)):
        if ends[i - 1] is not None and starts[i] is not None:
            s.gaps_hours.append((starts[i] - ends[i - 1]).total_seconds() / 3600)
    _fill_summaries(s)
    return s


def file_stats(path: Path) -> ChatStats:
    """One row per file: its chat's, or a LongMemEval file's instances pooled under the file's name."""
    stats, speakers = [], set()
    for chat, reload in iter_chats(path):
        stats.append((chat_stats(chat), reload))
        speakers.update(chat.speakers)
    if len(stats) == 1 and stats[0][1] is None:
        return stats[0][0]
    pooled = total_stats([s for s, _ in stats], path.stem)
    pooled.speakers = len(speakers)  # the same two (user, assistant) in every instance, not their sum
    return pooled


def _fill_summaries(s: ChatStats) -> None:
    if s.spans_days:  # one chat's span, or the mean per chat of a total
        s.days_spanned = round(statistics.mean(s.spans_days), 2)
    if s.session_lengths:
        s.messages_per_session_mean = round(statistics.mean(s.session_lengths), 2)
        s.messages_per_session_min = min(s.session_lengths)
        s.messages_per_session_max = max(s.session_lengths)
    if s.gaps_hours:
        s.gap_hours_mean = round(statistics.mean(s.gaps_hours), 2)
        s.gap_hours_median = round(statistics.median(s.gaps_hours), 2)
        s.gap_hours_max = round(max(s.gaps_hours), 2)


def total_stats(items: list[ChatStats], name: str = "total") -> ChatStats:
    datasets = sorted({i.dataset for i in items})
    t = ChatStats(chat=name, dataset="+".join(datasets), aggregation=TOTAL_AGGREGATION)
    for name in ("sessions", "messages", "turns", "words", "tokens", "pictures", "events", "qa", "speakers"):
        setattr(t, name, sum(getattr(i, name) for i in items))
    for i in items:
        for k, v in i.qa_by_category.items():
            t.qa_by_category[k] = t.qa_by_category.get(k, 0) + v
        t.session_lengths += i.session_lengths
        t.gaps_hours += i.gaps_hours
        t.spans_days += i.spans_days
    _fill_summaries(t)
    return t


def stats_rows(stats: list[ChatStats]) -> list[dict]:
    """One flat row per chat; with several datasets a subtotal per dataset (REALTALK, LoCoMo); then the total."""
    rows = [s.row() for s in stats]
    datasets = list(dict.fromkeys(s.dataset for s in stats))
    if len(datasets) > 1:
        for d in datasets:
            rows.append(total_stats([s for s in stats if s.dataset == d], f"total {DATASET_NAMES.get(d, d)}").row())
    name = "total" if len(datasets) <= 1 else "total (pooled)"
    return rows + [total_stats(stats, name).row()]
