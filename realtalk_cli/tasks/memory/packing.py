"""Packing what a memory recalls into the prompt: message ids and passages, best first, kept while they fit
the token budget; messages shown in time order under their session's date.

Message ids are matched case- and space-insensitively (`d3 : 12` is `D3:12`). Which evidence a prompt holds is
read from its text (`in_prompt`): a message shown, or a passage holding enough of the message's words, so a
passage that claims ids its text does not hold earns no recall for them (its claim is kept apart).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from realtalk_cli.data.model import Chat, Message
from realtalk_cli.data.text import words
from realtalk_cli.errors import RealtalkError
from realtalk_cli.scoring.f1 import stem
from realtalk_cli.tasks.memory.protocol import Passage
from realtalk_cli.tasks.prompts import render_message, session_header


@dataclass
class Recalled:
    context: str
    ids: list[str]  # message ids shown, then ids claimed by passages
    tokens: int
    claims: bool  # whether the memory gave any message id (shown or not), so that recall can be computed
    unknown_ids: int = 0  # strings that named no message
    over_budget: int = 0  # items left out because they did not fit
    over_budget_tokens: int = 0  # what those items would have cost, in tokens
    unknown_examples: list[str] = field(default_factory=list)  # a few of the strings that named no message
    shown: list[str] = field(default_factory=list)  # message ids shown as messages
    passages: list[Passage] = field(default_factory=list)  # the passages in the prompt


def _shown_id(text: str) -> str:
    """An id as a message quotes it: at most 40 characters (a plug-in may return anything)."""
    return text if len(text) <= 40 else text[:37] + "..."


def id_key(dia_id: str) -> str:
    """A message id as matched: without spaces, upper case (`d3 : 12` -> `D3:12`)."""
    return "".join(str(dia_id).split()).upper()


GAP = "..."  # between messages of one session that are not next to each other


class Packer:
    """Fits recalled items into a token budget for one chat; per-line token counts are computed once.

    Messages are shown in time order, one DATE header per session, with a `...` line where messages
    of the session were left out between two shown ones. Passages follow, in the memory's order.
    """

    def __init__(self, chat: Chat, count: Callable[[str], int]):
        self.chat = chat
        self.count = count
        self.messages = list(chat.messages())
        self.position = {}
        for i, m in enumerate(self.messages):
            self.position.setdefault(id_key(m.dia_id), i)
        self.dates = {s.number: s.date_time for s in chat.sessions}
        self._line_cost: dict[int, int] = {}
        self._header_cost = {n: count(session_header(d)) + 2 for n, d in self.dates.items()}
        self._gap_cost = count(GAP) + 1

    def line_cost(self, i: int) -> int:
        if i not in self._line_cost:
            self._line_cost[i] = self.count(render_message(self.messages[i])) + 1
        return self._line_cost[i]

    def pack(self, items: list[str | Passage], budget: int) -> Recalled:
        chosen: list[int | Passage] = []
        positions: set[int] = set()
        per_session: dict[int, int] = {}
        used = unknown = skipped = skipped_tokens = 0
        unknown_examples: list[str] = []
        for item in items:
            if isinstance(item, Passage):
                cost = self.count(render_passage(item)) + 1
                if used + cost > budget:
                    skipped += 1
                    skipped_tokens += cost
                    continue
                chosen.append(item)
                used += cost
                continue
            i = self.position.get(id_key(item))
            if i is None:
                unknown += 1
                if len(unknown_examples) < 3:
                    unknown_examples.append(_shown_id(item))
                continue
            if i in positions:
                continue
            session = self.messages[i].session
            if per_session.get(session):
                cost = self.line_cost(i) + self._span_change(positions, i) * self._gap_cost
            else:
                cost = self.line_cost(i) + self._header_cost[session]
            if used + cost > budget:
                skipped += 1
                skipped_tokens += cost
                continue
            chosen.append(i)
            positions.add(i)
            per_session[session] = per_session.get(session, 0) + 1
            used += cost
        context = self.render(chosen)
        tokens = self.count(context) if context else 0
        while tokens > budget and chosen:  # the running sum is an estimate; the rendered text decides
            last = chosen.pop()
            if isinstance(last, int):
                positions.discard(last)
            skipped += 1
            skipped_tokens += self.line_cost(last) if isinstance(last, int) else self.count(render_passage(last)) + 1
            context = self.render(chosen)
            tokens = self.count(context) if context else 0
        ids = [self.messages[i].dia_id for i in sorted(positions)]
        claimed = []  # ids a passage claims count as a shown message's would; ids naming no message do not
        for p in chosen:
            for claim in p.ids if isinstance(p, Passage) else []:
                i = self.position.get(id_key(claim))
                if i is None:
                    unknown += 1
                    if len(unknown_examples) < 3:
                        unknown_examples.append(_shown_id(claim))
                elif self.messages[i].dia_id not in ids:
                    claimed.append(self.messages[i].dia_id)
        # Recall is unavailable only when the memory claimed no id at all: ids it gave that did not fit,
        # or that name no message, put no evidence in the prompt (recall 0), they are not "unknown".
        claims = any(isinstance(item, str) or item.ids for item in items)
        passages = [p for p in chosen if isinstance(p, Passage)]
        return Recalled(
            context,
            ids + list(dict.fromkeys(claimed)),
            tokens,
            claims,
            unknown,
            skipped,
            skipped_tokens,
            unknown_examples,
            ids,
            passages,
        )

    def _span_change(self, positions: set[int], i: int) -> int:
        """In a session already shown: +1 gap line when message i stands alone, -1 when it closes a gap."""
        session = self.messages[i].session
        left = i - 1 in positions and self.messages[i - 1].session == session
        right = i + 1 in positions and self.messages[i + 1].session == session
        return 1 - left - right

    def render(self, chosen: list[int | Passage]) -> str:
        """Messages in time order under their session's DATE; then passages as given."""
        blocks = []
        lines: list[str] = []
        previous: int | None = None
        for i in sorted(p for p in chosen if isinstance(p, int)):
            session = self.messages[i].session
            if previous is None or self.messages[previous].session != session:
                if lines:
                    blocks.append("\n".join(lines))
                lines = [session_header(self.dates.get(session, "")).rstrip("\n")]
            elif i != previous + 1:
                lines.append(GAP)
            lines.append(render_message(self.messages[i]))
            previous = i
        if lines:
            blocks.append("\n".join(lines))
        passages = [render_passage(p) for p in chosen if isinstance(p, Passage)]
        if passages:
            blocks.append("MEMORY:\n" + "\n".join(passages))
        return "\n\n".join(blocks)


def check_recalled(items: object, spec: str) -> None:
    """A plug-in's recall() result must be a list of message ids and well-formed Passages: one line if not."""
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, (str, Passage)) for i in items):
        raise RealtalkError(f"--memory {spec}: recall() must return a list of message ids (str) and Passage objects")
    for p in items:
        if isinstance(p, Passage) and (wrong := _wrong_field(p)):
            raise RealtalkError(
                f"--memory {spec}: recall() returned a Passage whose {wrong}; a Passage needs"
                " text (str), ids (a list of str), date (str or None) and speaker (str or None)"
            )


def _wrong_field(p: Passage) -> str | None:
    """What is wrong with a plug-in's Passage, if anything (said without printing a huge text)."""
    if not isinstance(p.text, str):
        return f"text is {type(p.text).__name__}"
    if not isinstance(p.ids, (list, tuple)) or not all(isinstance(i, str) for i in p.ids):
        return f"ids are {p.ids!r}"[:120]
    if p.date is not None and not isinstance(p.date, str):
        return f"date is {type(p.date).__name__}"
    if p.speaker is not None and not isinstance(p.speaker, str):
        return f"speaker is {type(p.speaker).__name__}"
    for name, value in (("text", p.text), ("date", p.date), ("speaker", p.speaker)):
        if value is not None and not is_unicode(value):
            return f"{name} is not valid Unicode (it holds a lone surrogate, which no request can carry)"
    return None


def is_unicode(text: str) -> bool:
    """False for text holding a lone surrogate: it has no UTF-8 form, so no request body can carry it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def in_prompt(recalled: Recalled, messages: list[Message]) -> list[str]:
    """The ids of those `messages` whose text the prompt holds: shown as a message, or held by a passage in the
    prompt that claims it (a claim its text bears out)."""
    shown = set(recalled.shown)
    claims: dict[str, list[set[str]]] = {}
    for p in recalled.passages:
        held = _stems(p.text)
        for claim in p.ids:
            claims.setdefault(id_key(claim), []).append(held)
    return [
        m.dia_id
        for m in messages
        if m.dia_id in shown or any(_holds(held, m) for held in claims.get(id_key(m.dia_id), []))
    ]


HELD_WORDS = 3  # content words of a message a passage must hold (half of them for a shorter message)


def _stems(text: str) -> set[str]:
    return {stem(w) for w in words(text)}


def _holds(passage: set[str], m: Message) -> bool:
    """Whether a passage (its stemmed content words) holds message m: 3 of the message's content words, or half of
    them when it has fewer than 6. A fact a memory extracted holds its message (LoCoMo's observations: 92% of the
    messages they cite, against 6% of other messages); "Okay." holds no message but "Okay."."""
    wanted = _stems(f"{m.clean_text} {m.blip_caption or ''}")
    return bool(wanted) and len(wanted & passage) >= min(HELD_WORDS, (len(wanted) + 1) // 2)


def render_passage(p: Passage) -> str:
    return f"- ({p.date}) {p.text}" if p.date else f"- {p.text}"
