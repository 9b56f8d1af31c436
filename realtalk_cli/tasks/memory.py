"""Pluggable memory: what goes into the prompt for each question, within a token budget.

A memory is built once per chat, reads the whole chat once (`ingest`), then answers each question
with message ids and/or passages, best first (`recall`). realtalk keeps items in that order while they
fit the budget, shows the chosen messages in time order under their session's date, and computes
evidence recall from the ids shown or claimed. The built-in retrievers and memories
(`tasks/memories.py`) use the same protocol as a user's plug-in loaded with `--memory SPEC`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.render import render_message, session_header


@dataclass
class Passage:
    """Free text for the prompt (a summary, an extracted fact), with the message ids and date it came from."""

    text: str
    ids: list[str] = field(default_factory=list)
    date: str | None = None


@dataclass
class MemoryTools:
    """What realtalk lends a memory while it ingests a chat."""

    store: Path | None
    """A folder for this chat under the run folder, kept between runs (None in a dry run): save slow work here."""
    count_tokens: Callable[[str], int]
    """Tokens of a text for the answering model, as the budget counts them."""
    complete: Callable[[list[list[dict]]], list[str | None]] | None = None
    """Realtalk's LLM client: chat requests in, reply texts out (None for a failed request). Concurrent,
    cached, and its tokens and cost are reported as ingestion, apart from answering. In a dry run the requests
    are counted for the estimate and every reply is None."""


@runtime_checkable
class Memory(Protocol):
    """A memory system under test. Optional attribute `version` (a string) goes into the run's identity."""

    def ingest(self, chat: Chat, tools: MemoryTools) -> None:
        """Read the whole chat (all sessions, with their dates) once, before any question. `chat` is a copy
        without the questions (`chat.qa` is empty)."""
        ...

    def recall(self, question: str, budget: int) -> list[str | Passage]:
        """What to show for `question`, best first: message ids (`dia_id`) and/or passages.

        `budget` is the context's size in prompt tokens; realtalk keeps items in order while they fit.
        """
        ...


# --- loading a memory ----------------------------------------------------------------------------


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """`key=value` strings (from --memory-option) as a dict."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RealtalkError(f"--memory-option {pair!r}: expected key=value")
        if key.strip() in options:
            raise RealtalkError(f"--memory-option {key.strip()} given twice: give each key once")
        options[key.strip()] = value
    return options


# The user's plug-ins imported by this process: the console script then ends with the interpreter's full
# teardown, which flushes and closes what a plug-in left open (see cli.main).
plugins_loaded: list[str] = []


def load_factory(spec: str) -> Callable[..., Memory]:
    """The class (or function) a SPEC names: a built-in name, `module:Name` or `path/to/file.py:Name`."""
    from realtalk_cli.tasks.memories import BUILTIN

    if spec in BUILTIN:
        return BUILTIN[spec]
    plugins_loaded.append(spec)
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        known = ", ".join(sorted(BUILTIN))
        raise RealtalkError(f"--memory {spec!r}: expected module:Name, path/to/file.py:Name or one of {known}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise RealtalkError(f"--memory {spec}: {path}: no such file")
        module_name = "realtalk_memory_" + re.sub(r"\W", "_", str(path.resolve()))
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
        try:
            loader.loader.exec_module(module)
        except (Exception, SystemExit) as e:
            raise RealtalkError(f"--memory {spec}: {path} failed to import: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except (Exception, SystemExit) as e:
            raise RealtalkError(f"--memory {spec}: cannot import {target}: {type(e).__name__}: {e}") from None
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        raise RealtalkError(f"--memory {spec}: {target} has no class or function {name!r}")
    if inspect.isclass(factory) and not all(callable(getattr(factory, m, None)) for m in ("ingest", "recall")):
        raise RealtalkError(f"--memory {spec}: {name} lacks an ingest(chat, tools) or recall(question, budget) method")
    return factory


def build_memory(spec: str, options: dict[str, str]) -> Memory:
    factory = load_factory(spec)
    try:
        memory = factory(**options)
    except TypeError as e:
        raise RealtalkError(f"--memory {spec}: options {sorted(options)} not accepted: {e}") from None
    except (Exception, SystemExit) as e:  # a plug-in's bug while building: one line, not a traceback
        raise RealtalkError(f"--memory {spec}: building it failed: {type(e).__name__}: {e}") from None
    if not isinstance(memory, Memory):
        raise RealtalkError(f"--memory {spec}: the object built has no ingest(chat, tools) or recall(question, budget)")
    return memory


def memory_identity(spec: str, options: dict[str, str]) -> dict:
    """What names a memory in a run's identity: its spec, options and version (the class's `version`)."""
    factory = load_factory(spec)
    version = getattr(getattr(factory, "func", factory), "version", None)  # BUILTIN holds partials
    if version is not None and not isinstance(version, (str, int, float)):
        # e.g. a property: its repr changes every run, so every resume would look like another memory
        raise RealtalkError(f"--memory {spec}: `version` must be a plain string class attribute, not {version!r}")
    return {
        "spec": spec,
        "options": dict(sorted(options.items())),
        "version": None if version is None else str(version),
    }


# --- packing what a memory recalls into the prompt ------------------------------------------------------


@dataclass
class Recalled:
    context: str
    ids: list[str]  # message ids shown, then ids claimed by passages
    tokens: int
    claims: bool  # whether the memory gave any message id (shown or not), so that recall can be computed
    unknown_ids: int = 0  # strings that named no message
    over_budget: int = 0  # items left out because they did not fit


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
            self.position.setdefault(m.dia_id.strip(), i)
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
        used = unknown = skipped = 0
        for item in items:
            if isinstance(item, Passage):
                cost = self.count(render_passage(item)) + 1
                if used + cost > budget:
                    skipped += 1
                    continue
                chosen.append(item)
                used += cost
                continue
            i = self.position.get(str(item).strip())
            if i is None:
                unknown += 1
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
            context = self.render(chosen)
            tokens = self.count(context) if context else 0
        ids = [self.messages[i].dia_id for i in sorted(positions)]
        claimed = []  # ids a passage claims count as a shown message's would; ids naming no message do not
        for p in chosen:
            for claim in p.ids if isinstance(p, Passage) else []:
                i = self.position.get(claim.strip())
                if i is None:
                    unknown += 1
                elif self.messages[i].dia_id not in ids:
                    claimed.append(self.messages[i].dia_id)
        # Recall is unavailable only when the memory claimed no id at all: ids it gave that did not fit,
        # or that name no message, put no evidence in the prompt (recall 0), they are not "unknown".
        claims = any(isinstance(item, str) or item.ids for item in items)
        return Recalled(context, ids + list(dict.fromkeys(claimed)), tokens, claims, unknown, skipped)

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
                " text (str), ids (a list of str) and date (str or None)"
            )


def _wrong_field(p: Passage) -> str | None:
    """What is wrong with a plug-in's Passage, if anything (said without printing a huge text)."""
    if not isinstance(p.text, str):
        return f"text is {type(p.text).__name__}"
    if not isinstance(p.ids, (list, tuple)) or not all(isinstance(i, str) for i in p.ids):
        return f"ids are {p.ids!r}"[:120]
    if p.date is not None and not isinstance(p.date, str):
        return f"date is {type(p.date).__name__}"
    return None


def render_passage(p: Passage) -> str:
    return f"- ({p.date}) {p.text}" if p.date else f"- {p.text}"
