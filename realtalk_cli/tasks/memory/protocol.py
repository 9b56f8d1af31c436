"""Pluggable memory: what goes into the prompt for each question, within a token budget.

A memory is built once per chat, reads the whole chat once (`ingest`), then answers each question
with message ids and/or passages, best first (`recall`). realtalk keeps items in that order while they
fit the budget, shows the chosen messages in time order under their session's date, and computes
evidence recall from the ids shown or claimed. The built-in retrievers and memories
(`builtins.py`) use the same protocol as a user's plug-in loaded with `--memory SPEC` (`loader.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from realtalk_cli.data.model import Chat


@contextlib.contextmanager
def quiet_stage(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress stage that shows nothing."""
    yield lambda n: None


@dataclass
class Passage:
    """Free text for the prompt (a summary, an extracted fact), with the message ids and date it came from, and
    optionally whose memory it is."""

    text: str
    ids: list[str] = field(default_factory=list)
    date: str | None = None
    speaker: str | None = None
    """One of the chat's two speakers, for a memory that keeps one store per speaker as mem0 does: `--compat mem0`
    lists it under that speaker (None: under the speaker of the messages its ids name). realtalk's own layout
    does not show it."""


@dataclass
class MemoryTools:
    """What realtalk lends a memory while it ingests a chat."""

    store: Path | None
    """A folder for this chat under the run folder, kept between runs (None in a dry run): save slow work here."""
    count_tokens: Callable[[str], int]
    """Tokens of a text for the answering model, as the budget counts them."""
    complete: Callable[..., list[str | None]] | None = None
    """Realtalk's LLM client: `complete(requests, max_tokens=400, temperature=0)`, chat requests in, reply
    texts out (None for a failed request). Concurrent, cached,
    and its tokens and cost are reported as ingestion, apart from answering. In a dry run the requests are
    counted for the estimate (replies priced at `max_tokens`) and every reply is None."""
    progress: Callable = quiet_stage
    """Shows a slow step to the user (a labelled bar with a total on a terminal, one line otherwise):
    `with tools.progress("encoding 476 windows", 476) as advance:` ... `advance(n)` as n more are done."""


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
