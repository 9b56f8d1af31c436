"""The built-in memories, written against the same `Memory` protocol as a user's plug-in.

- `bm25`, `dense`, `hybrid`: the retrievers of `retrieval.py` over ±2-message windows.
- `observations`, `session-summaries`: LoCoMo's own `observation` and `session_summary` fields.
- `llm-summaries`: a summary of each session written once through realtalk's LLM client, cached.
"""

from __future__ import annotations

import json
import sys
from functools import partial

from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import write_atomic
from realtalk_cli.tasks.memory.protocol import MemoryTools, Passage
from realtalk_cli.tasks.memory.retrieval import (
    RADIUS,
    BM25Retriever,
    chat_session_times,
    date_ranked,
    fuse,
    message_ids,
    named_speaker,
    near_date,
    question_dates,
    speaker_names,
    window_texts,
    windows,
    without_names,
)


def _flag(value: str | bool) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")


class RetrieverMemory:
    """Ranks ±radius-message windows by BM25, dense similarity (of the window, and of its own message's text) or
    the reciprocal-rank fusion of the three."""

    # 2: BM25 1.2/0.75; dense asked without the speakers' names, over windows and messages
    # 3: messages scored by their best window, neighbours and the other speaker's lines after (message_ids)
    version = "3"

    def __init__(
        self,
        retriever: str = "hybrid",
        embedder: str | None = None,
        top_k: int | str | None = None,
        radius: int | str = RADIUS,
        dates: str | bool = True,
    ):
        if retriever not in ("bm25", "dense", "hybrid"):
            raise RealtalkError(f"retriever {retriever!r}: choose bm25, dense or hybrid")
        self.retriever = retriever
        self.embedder = embedder
        self.top_k = int(top_k) if top_k not in (None, "") else None
        self.radius = int(radius)
        self.dates = _flag(dates)

    def ingest(self, chat: Chat, tools: MemoryTools) -> None:
        from realtalk_cli.tasks.memory.embeddings import DenseRetriever, load_embedder

        self.messages = list(chat.messages())
        self.windows = windows(self.messages, self.radius)
        texts = window_texts(self.messages, self.windows)
        self.names = speaker_names(chat, self.messages)
        self.lexical = [BM25Retriever(texts)] if self.retriever in ("bm25", "hybrid") else []
        self.dense = []
        if self.retriever in ("dense", "hybrid"):
            # windows, and each window's own message without its speaker (window i is centred on message i)
            embedder = load_embedder(self.embedder)
            own = [m.clean_text for m in self.messages]
            what = f"windows and messages of {chat.name}"
            vectors = embedder.encode_cached(texts + own, tools.progress, what)
            self.dense = [
                DenseRetriever(embedder, vectors=vectors[: len(texts)]),
                DenseRetriever(embedder, vectors=vectors[len(texts) :]),
            ]
        self.session_times = chat_session_times(chat)

    def recall(self, question: str, budget: int) -> list[str]:
        # Each message by its best window: its own message before its neighbours, the speaker the question names
        # before the other (held out, categories 1-4: LoCoMo 0.910 -> 0.940, REALTALK 0.901 -> 0.929)
        return message_ids(self.messages, self.windows, self.rank(question), named_speaker(question, self.names))

    def rank(self, question: str) -> list[int]:
        """The windows best first: by BM25, dense similarity or both fused; those near a date it names first."""
        # Dense similarity is asked without the speakers' names: every window holds them, and MiniLM then
        # ranks windows by the names more than by what the question asks (0.756 -> 0.808 recall on the
        # REALTALK tuning chats, 0.904 -> 0.917 on LoCoMo's, categories 1-4).
        content = without_names(question, self.names)
        rankings = [r.rank(question) for r in self.lexical] + [r.rank(content) for r in self.dense]
        ranking = rankings[0] if len(rankings) == 1 else fuse(rankings)
        if self.dates:
            ranking = date_ranked(ranking, self.windows, near_date(self.session_times, question_dates(question)))
        return ranking if self.top_k is None else ranking[: self.top_k]


class _PassageIndex:
    """Passages ranked by stemmed BM25 against the question."""

    def index(self, passages: list[Passage]) -> None:
        self.passages = passages
        self.ranker = BM25Retriever([p.text for p in passages]) if passages else None

    def recall(self, question: str, budget: int) -> list[str | Passage]:
        if self.ranker is None:
            return []
        ranked = self.ranker.rank(question)
        rest = [i for i in range(len(self.passages)) if i not in set(ranked)]
        return [self.passages[i] for i in ranked + rest]


class ObservationMemory(_PassageIndex):
    """LoCoMo's `observation` field: facts per session and speaker, each citing the message it came from."""

    version = "1"

    def ingest(self, chat: Chat, tools: MemoryTools) -> None:
        passages = [
            Passage(
                f"{speaker}: {fact}", [e.strip() for e in source.replace(",", ";").split(";") if e.strip()], s.date_time
            )
            for s in chat.sessions
            for speaker, facts in s.observations.items()
            for fact, source in facts
        ]
        if not passages:
            raise RealtalkError(
                f"{chat.name}: --memory observations needs LoCoMo's 'observation' field; this chat has none"
            )
        self.index(passages)


class SessionSummaryMemory(_PassageIndex):
    """LoCoMo's `session_summary` field: one summary per session (claims no message ids, so recall is unavailable)."""

    version = "1"

    def ingest(self, chat: Chat, tools: MemoryTools) -> None:
        passages = [Passage(s.summary, [], s.date_time) for s in chat.sessions if s.summary]
        if not passages:
            raise RealtalkError(f"{chat.name}: --memory session-summaries needs LoCoMo's 'session_summary' field")
        self.index(passages)


SUMMARY_PROMPT = (
    "Summarise this conversation between {a} and {b} from {date} in at most {words} words. Keep every fact a"
    " later question could ask about: names, places, plans, events and when they happen.\n\n{conversation}"
)


class LLMSummaryMemory(_PassageIndex):
    """A summary of each session, written once through realtalk's LLM client and cached in the run folder."""

    version = "1"

    def __init__(self, words: int | str = 150):
        self.words = int(words)

    def ingest(self, chat: Chat, tools: MemoryTools) -> None:
        from realtalk_cli.tasks.prompts import render_message

        cache = tools.store / "summaries.json" if tools.store else None
        saved = _saved_summaries(cache) if cache and cache.exists() else {}
        sessions = [s for s in chat.sessions if s.messages and str(s.number) not in saved]
        if sessions:
            if tools.complete is None:
                raise RealtalkError(
                    "--memory llm-summaries calls the LLM while ingesting; it cannot be estimated by --dry-run"
                )
            prompt = partial(SUMMARY_PROMPT.format, a=chat.speaker_1, b=chat.speaker_2, words=self.words)
            requests = [
                [
                    {
                        "role": "user",
                        "content": prompt(date=s.date_time, conversation="\n".join(map(render_message, s.messages))),
                    }
                ]
                for s in sessions
            ]
            for s, text in zip(sessions, tools.complete(requests), strict=True):
                if text and text.strip():  # a failed request is asked again next run
                    saved[str(s.number)] = text.strip()
            if cache:
                write_atomic(cache, json.dumps(saved, indent=1, ensure_ascii=False))
        dates = {s.number: s.date_time for s in chat.sessions}
        self.index([Passage(saved[k], [], dates.get(int(k))) for k in sorted(saved, key=int)])


def _saved_summaries(path) -> dict[str, str]:
    """The summaries saved by an earlier run; a damaged file is warned about and its summaries asked again."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(saved, dict) and all(k.isdigit() and isinstance(v, str) for k, v in saved.items()):
            return saved
    except (OSError, ValueError):
        pass
    sys.stderr.write(f"warning: {path} is damaged; its session summaries are written again\n")
    return {}


BUILTIN = {
    "bm25": partial(RetrieverMemory, retriever="bm25"),
    "dense": partial(RetrieverMemory, retriever="dense"),
    "hybrid": partial(RetrieverMemory, retriever="hybrid"),
    "observations": ObservationMemory,
    "session-summaries": SessionSummaryMemory,
    "llm-summaries": LLMSummaryMemory,
}
