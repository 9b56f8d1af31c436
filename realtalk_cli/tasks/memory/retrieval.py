"""Retrieval over a chat: stemmed BM25, dense embeddings and their fusion, ranking ±2-message windows.

A window is a message with the RADIUS messages either side of it, cut at the session's borders; its
indexed text carries the speakers' names and picture captions. Every retriever ranks windows for a
question; `message_ids` turns a ranking into message ids best first (each message scored by the best window
holding it, its own message before its neighbours, the speaker the question names before the other), which
the memory layer packs into the prompt under a token budget.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from difflib import get_close_matches
from typing import Protocol

from realtalk_cli.data.model import Chat, Message
from realtalk_cli.data.text import words
from realtalk_cli.scoring.f1 import stem

RADIUS = 2
RRF_K = 60  # reciprocal-rank fusion constant, as in Cormack et al. (2009)
NEIGHBOUR = 0.8  # a window's score for a message d places from its own message: times NEIGHBOUR ** d
OTHER_SPEAKER = 0.6  # and times this for a message by the other speaker, when the question names one


class BM25:
    def __init__(
        self, documents: list[str], k1: float = 1.5, b: float = 0.75, analyzer: Callable[[str], list[str]] = words
    ):
        self.analyzer = analyzer
        self.docs = [Counter(analyzer(d)) for d in documents]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}
        self.k1, self.b = k1, b

    def scores(self, query: str) -> list[float]:
        terms = self.analyzer(query)
        out = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            s = 0.0
            for t in terms:
                f = doc.get(t, 0)
                if f:
                    s += (
                        self.idf[t]
                        * f
                        * (self.k1 + 1)
                        / (f + self.k1 * (1 - self.b + self.b * length / (self.avg or 1)))
                    )
            out.append(s)
        return out

    def top(self, query: str, k: int) -> list[int]:
        """Indices of the k best documents, best first (ties keep document order)."""
        scored = self.scores(query)
        return sorted(range(len(scored)), key=lambda i: (-scored[i], i))[:k]


def stemmed_words(text: str) -> list[str]:
    """Content words, Porter-stemmed ('visited' and 'visiting' meet at 'visit')."""
    return [stem(w) for w in words(text)]


def indexed_text(m: Message) -> str:
    text = f"{m.speaker}: {m.clean_text}"
    return f"{text} [shares {m.blip_caption}]" if m.blip_caption else text


@dataclass(frozen=True)
class Window:
    center: int  # position of the message in chat.messages() order
    start: int  # first position, inclusive
    end: int  # last position, exclusive
    session: int


def windows(messages: list[Message], radius: int = RADIUS) -> list[Window]:
    """One window per message: it and `radius` messages either side, never crossing a session border."""
    out = []
    for i, m in enumerate(messages):
        start = i
        while start > 0 and i - start < radius and messages[start - 1].session == m.session:
            start -= 1
        end = i + 1
        while end < len(messages) and end - i <= radius and messages[end].session == m.session:
            end += 1
        out.append(Window(i, start, end, m.session))
    return out


def window_texts(messages: list[Message], wins: list[Window]) -> list[str]:
    return ["\n".join(indexed_text(messages[j]) for j in range(w.start, w.end)) for w in wins]


class Retriever(Protocol):
    """Ranks a chat's windows for a question."""

    name: str

    def rank(self, question: str) -> list[int]:
        """Window indices, best first; windows that match nothing may be left out."""
        ...


class BM25Retriever:
    name = "bm25"

    def __init__(self, texts: list[str]):
        # k1 1.2, b 0.75: on the tuning chats' windows at a 2,700-token prompt, 0.714 recall on REALTALK and 0.874
        # on LoCoMo 1-4, against 0.693 and 0.869 with Anserini's 0.9/0.4 (bench/retrieval.py names the chats)
        self.index = BM25(texts, k1=1.2, b=0.75, analyzer=stemmed_words)

    def rank(self, question: str) -> list[int]:
        scores = self.index.scores(question)
        return [i for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)) if scores[i] > 0]


def fuse(rankings: list[list[int]], weights: list[float] | None = None) -> list[int]:
    """Reciprocal-rank fusion: each list adds weight / (RRF_K + rank) to the items it ranks."""
    score: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, i in enumerate(ranking):
            score[i] = score.get(i, 0.0) + weight / (RRF_K + rank + 1)
    return sorted(score, key=lambda i: (-score[i], i))


# --- dates named in a question ------------------------------------------------------------------

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for m in names
}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b", re.I)
_MONTH_DAY_YEAR = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
_MONTH_YEAR = re.compile(rf"\b{_MONTH},?\s+(\d{{4}})\b", re.I)
_NUMERIC = re.compile(r"\b(\d{1,2})[./](\d{1,2})[./](\d{4})\b")


def question_dates(question: str) -> list[tuple[datetime, datetime]]:
    """Date ranges a question names ('on 29 Dec 2023', 'in May 2023', 'December 30, 2023', '29.12.2023')."""
    found = []
    for m in _DAY_MONTH_YEAR.finditer(question):
        found.append(_day(int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1))))
    for m in _MONTH_DAY_YEAR.finditer(question):
        found.append(_day(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2))))
    for m in _NUMERIC.finditer(question):
        found.append(_day(int(m.group(3)), int(m.group(2)), int(m.group(1))))
    if not found:
        for m in _MONTH_YEAR.finditer(question):
            year, month = int(m.group(2)), _MONTHS[m.group(1).lower()]
            first = datetime(year, month, 1)
            found.append((first, datetime(year + month // 12, month % 12 + 1, 1)))
    return [d for d in found if d is not None]


def _day(year: int, month: int, day: int) -> tuple[datetime, datetime] | None:
    try:
        first = datetime(year, month, day)
    except ValueError:
        return None
    return (first, first + timedelta(days=1))


def near_date(session_times: dict[int, datetime | None], ranges: list[tuple[datetime, datetime]]) -> set[int]:
    """Sessions from the named day (or month) to a week after it: people tell of an event on the day or soon after."""
    near = set()
    for number, t in session_times.items():
        if t is None:
            continue
        if any(start - timedelta(days=1) <= t < end + timedelta(days=7) for start, end in ranges):
            near.add(number)
    return near


def date_ranked(ranking: list[int], wins: list[Window], near: set[int]) -> list[int]:
    """The same ranking with windows from the sessions near the question's date moved first."""
    if not near:
        return ranking
    return [i for i in ranking if wins[i].session in near] + [i for i in ranking if wins[i].session not in near]


def window_ids(messages: list[Message], wins: list[Window], ranking: list[int]) -> list[str]:
    """Message ids best first: each window's own message, then its neighbours nearest first (the stock baseline's
    order; the built-in retrievers use `message_ids`)."""
    ids: list[str] = []
    seen: set[int] = set()
    for w in (wins[i] for i in ranking):
        for j in sorted(range(w.start, w.end), key=lambda j: (abs(j - w.center), j)):
            if j not in seen:
                seen.add(j)
                ids.append(messages[j].dia_id)
    return ids


def message_ids(
    messages: list[Message], wins: list[Window], ranking: list[int], speaker: str | None = None
) -> list[str]:
    """Message ids best first. A window at rank r gives each of its messages 1 / (RRF_K + r + 1), times NEIGHBOUR ** d
    for a message d places from the window's own, and times OTHER_SPEAKER for a message not by `speaker` (the one
    speaker the question names, if any); a message takes its best score. So a neighbour comes after the next
    windows' own messages, and the other speaker's lines after the named speaker's: more distinct evidence fits.
    (The evidence of LoCoMo's and REALTALK's questions naming one speaker is that speaker's message 96% of the time;
    LoCoMo's adversarial questions, which name the wrong one on purpose, are the exception.)"""
    score: dict[int, float] = {}
    for rank, w in enumerate(wins[i] for i in ranking):
        for j in range(w.start, w.end):
            value = NEIGHBOUR ** abs(j - w.center) / (RRF_K + rank + 1)
            if speaker is not None and messages[j].speaker != speaker:
                value *= OTHER_SPEAKER
            if value > score.get(j, 0.0):
                score[j] = value
    return [messages[j].dia_id for j in sorted(score, key=lambda j: (-score[j], j))]


# --- the speakers' names in a question ------------------------------------------------------------

# A name right after a greeting or thanks ("Hey Kate!", "thanks Bella") names the person greeted: in a chat of
# two, the other speaker. REALTALK's participants call each other by names that are not the file's speaker
# names (Chat_1: Emi is "Kate"; Chat_4: Emi is "Bella", Paola "Liza"), and its questions use those names.
_GREETING = re.compile(
    r"\b(?:hi|hello|hey|heya|hiya|yo|dear|thanks|thank you|thx|bye|goodnight|good night|morning|good morning"
    r"|congrats|congratulations|welcome|sorry|love you)[,!.]*\s+([A-Z][a-z]{2,})\b",
)
_GREETING_I = re.compile(_GREETING.pattern, re.I)


def speaker_names(chat: Chat, messages: list[Message]) -> dict[str, str]:
    """Lower-cased names -> speaker: each part of every speaker's name, and in a chat of two the names a speaker
    greets the other by at least twice (and writes capitalised more often than not: not "They")."""
    names = {part.lower(): s for s in chat.speakers for part in s.split() if len(part) > 1}
    if len(chat.speakers) != 2:
        return names
    greeted: Counter[tuple[str, str]] = Counter()
    for m in messages:
        for name in (match.group(1) for match in _GREETING_I.finditer(m.clean_text)):
            if name[0].isupper():
                greeted[(m.speaker, name)] += 1
    lower = Counter(w for m in messages for w in re.findall(r"\b[a-z]+\b", m.clean_text))
    capital = Counter(w.lower() for m in messages for w in re.findall(r"\b[A-Z][a-z]+\b", m.clean_text))
    for (speaker, name), n in greeted.items():
        key = name.lower()
        other = [s for s in chat.speakers if s != speaker]
        if n >= 2 and len(other) == 1 and key not in names and capital[key] > lower[key]:
            names[key] = other[0]
    return names


def _speaker_named(token: str, names: dict[str, str]) -> str | None:
    """The speaker a word of a question names, if any: a name part or alias, possessive too ("Bella's"), or a
    capitalised misspelling by a letter ("Aqib" for Akib)."""
    word = re.sub(r"[^A-Za-z]", "", token).lower()
    for candidate in (word, word.removesuffix("s")):
        if candidate in names:
            return names[candidate]
        close = get_close_matches(candidate, names, n=1, cutoff=0.75) if token[:1].isupper() else []
        if len(candidate) >= 4 and close:
            return names[close[0]]
    return None


def without_names(question: str, names: dict[str, str]) -> str:
    """The question without the speakers' names (possessives and misspellings by one letter too: "Aqib's")."""
    kept = [token for token in question.split() if _speaker_named(token, names) is None]
    return " ".join(kept) if kept else question


def named_speaker(question: str, names: dict[str, str]) -> str | None:
    """The one speaker a question names (by a name part, an alias or a misspelling); None for none or several."""
    named = {s for token in question.split() if (s := _speaker_named(token, names)) is not None}
    return named.pop() if len(named) == 1 else None


def chat_session_times(chat: Chat) -> dict[int, datetime | None]:
    return {s.number: s.time for s in chat.sessions}
