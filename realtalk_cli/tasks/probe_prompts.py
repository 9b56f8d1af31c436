"""Memory-probing prompts: how a chat becomes context (full, events, retrieved) and each question a prompt."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from realtalk_cli.data.evidence import evidence_recall, resolve_evidence
from realtalk_cli.data.formats import chat_paths, load_chat
from realtalk_cli.data.model import Chat, QAItem
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks.memory_runner import CallTimeout, MemoryRunner, memory_choice
from realtalk_cli.tasks.render import render_message, session_header
from realtalk_cli.tasks.runs import fill, prompt_text, text_hash

if TYPE_CHECKING:
    from realtalk_cli.tasks.probe_options import ProbeOptions

ContextMode = Literal["full", "events", "retrieval", "bm25", "dense", "hybrid", "memory"]


@dataclass
class Item:
    chat: Chat
    chat_file: Path
    qa_index: int
    qa: QAItem
    template: str
    values: dict[str, str]  # the context string is shared by a chat's items, never copied
    retrieved: list[str] | None = None  # message ids shown or claimed, when a retriever or memory chose the context
    recall: float | None = None  # evidence recall of `retrieved`; None when unavailable
    context_tokens: int | None = None
    dropped_sessions: int = 0
    options: dict[str, str] | None = None  # LoCoMo adversarial two-choice question
    error: str | None = None  # the memory's recall failed (past --memory-timeout): not asked, an error row

    @classmethod
    def with_prompt(cls, chat: Chat, chat_file: Path, qa_index: int, qa: QAItem, prompt: str) -> Item:
        """An item whose prompt is given whole (the paper's protocol builds its own)."""
        return cls(chat, chat_file, qa_index, qa, "{prompt}", {"prompt": prompt})

    @property
    def messages(self) -> list[dict]:
        """The request, built when asked for: a run holds one context per chat, not one per question."""
        context = self.values.get("context", "")
        rest = {k: v for k, v in self.values.items() if k != "context"}
        if "{" in context or any("{context}" in v for v in rest.values()):
            return [{"role": "user", "content": fill(self.template, **self.values)}]
        # the same text as filling every key in order, without scanning the long context once per key
        return [{"role": "user", "content": fill(self.template, **rest).replace("{context}", context)}]

    @property
    def shares_context(self) -> bool:
        """Whether the chat's other questions send the same context (full and events do; retrieval does not)."""
        return self.retrieved is None and bool(self.values.get("context"))

    def prefix(self) -> str:
        """The prompt up to the question: what a provider's prompt cache can serve for the chat's other questions."""
        head = self.template.split("{question}")[0]
        return fill(head, **{k: v for k, v in self.values.items() if k in ("speaker_1", "speaker_2", "context")})


# Dates written out, never in the DATE lines' raw format (29.12.2023 would score 0 against "29 December 2023").
TEMPORAL_HINT = (
    " Use the DATE of each CONVERSATION to answer with an approximate date,"
    " written with the month in words (e.g. 29 December 2023 or the week before 3 May 2023)."
)
NOT_MENTIONED = "Not mentioned in the conversation"


def render_session(chat: Chat, number: int, mode: ContextMode) -> str:
    s = next(s for s in chat.sessions if s.number == number)
    if mode == "events":
        lines = [
            f"{speaker}: {e.sub_event}"
            for speaker, agent in zip(chat.speakers, ("agent_a", "agent_b"), strict=True)
            for e in s.events.get(agent, [])
            if e.sub_event
        ]
        return f"DATE: {s.date_time}\nEVENTS:\n" + "\n".join(lines)
    return session_header(s.date_time) + "\n".join(render_message(m) for m in s.messages)


def render_sessions(chat: Chat, mode: ContextMode, numbers: list[int]) -> str:
    """Sessions oldest first, each once (the paper's own layout is in paper_protocol.py)."""
    return "\n\n".join(render_session(chat, n, mode) for n in numbers)


def fit_sessions(chat: Chat, mode: ContextMode, model: str, budget: int) -> tuple[str, int]:
    """The context, keeping the most recent sessions when the whole chat exceeds `budget` tokens."""
    numbers = [s.number for s in chat.sessions if s.messages or mode == "events"]
    text = render_sessions(chat, mode, numbers)
    dropped = 0
    # A token is at least one byte: a context of no more bytes than the budget fits without loading a tokenizer.
    while len(numbers) > 1 and len(text.encode("utf-8")) > budget and count_tokens(text, model)[0] > budget:
        numbers = numbers[1:]
        dropped += 1
        text = render_sessions(chat, mode, numbers)
    return text, dropped


def adversarial_options(qa: QAItem) -> dict[str, str]:
    """LoCoMo's two-choice question; the order is drawn from the question's hash, so runs repeat."""
    first = int(hashlib.sha256(qa.question.encode()).hexdigest(), 16) % 2 == 0
    return {"a": NOT_MENTIONED, "b": qa.gold} if first else {"a": qa.gold, "b": NOT_MENTIONED}


def pick_option(reply: str, options: dict[str, str]) -> str:
    """LoCoMo's reading of a two-choice reply: 'a', '(a)' ... map to the option's text."""
    text = reply.strip().lower()
    if len(text) == 1:
        return options["a"] if "a" in text else options["b"]
    if len(text) == 3:
        return options["a"] if "(a)" in text else options["b"]
    return text


@dataclass
class Templates:
    answer: str
    adversarial: str
    judge: str

    @classmethod
    def load(cls) -> Templates:
        return cls(
            prompt_text("probe_answer.txt"), prompt_text("probe_adversarial.txt"), prompt_text("probe_judge.txt")
        )

    def hashes(self) -> dict[str, str]:
        return {
            "probe_answer.txt": text_hash(self.answer),
            "probe_adversarial.txt": text_hash(self.adversarial),
            "probe_judge.txt": text_hash(self.judge),
        }


def build_items(
    files: list[Path], opts: ProbeOptions, templates: Templates, model_name: str, memories: MemoryRunner | None = None
) -> list[Item]:
    """One prompt per question. `memories` runs the retriever or memory (one without an LLM is made when omitted)."""
    items: list[Item] = []
    claims = False  # whether the memory gave any message id in this run
    choice = memory_choice(opts.context, opts.memory, opts.memory_options, opts.top_k, opts.embedder)
    if choice is not None and memories is None:
        memories = MemoryRunner(choice, lambda text: count_tokens(text, model_name)[0])
    for path in chat_paths(files):
        chat = load_chat(path)
        full_context, dropped = ("", 0)
        if choice is None:
            full_context, dropped = fit_sessions(chat, opts.context, model_name, opts.max_context_tokens)
        ask = memories.open(chat) if memories is not None else None
        index = chat.message_index()
        for i, qa in enumerate(chat.qa):
            adversarial = chat.dataset == "locomo" and qa.category == 5
            if adversarial and opts.skip_adversarial:
                continue
            context, retrieved, recall, context_tokens, options, error = full_context, None, None, None, None, None
            if ask is not None:
                try:
                    recalled = ask(qa.question, opts.context_tokens)
                    context, retrieved, context_tokens = recalled.context, recalled.ids, recalled.tokens
                    recall = evidence_recall(resolve_evidence(chat, qa.evidence, index).resolved, recalled.ids)
                    claims = claims or recalled.claims
                except CallTimeout as e:
                    error = str(e)
            values = {"speaker_1": chat.speaker_1, "speaker_2": chat.speaker_2, "context": context}
            if adversarial:
                options = adversarial_options(qa)
                template = templates.adversarial
                values.update(question=qa.question, option_a=options["a"], option_b=options["b"])
            else:
                template = templates.answer
                values["question"] = qa.question + (TEMPORAL_HINT if qa.category == 2 else "")
            items.append(
                Item(chat, path, i, qa, template, values, retrieved, recall, context_tokens, dropped, options, error)
            )
            if opts.limit is not None and len(items) >= opts.limit:
                return _recall_if_claimed(items, claims)
    return _recall_if_claimed(items, claims)


def _recall_if_claimed(items: list[Item], claims: bool) -> list[Item]:
    """Recall is unavailable when the memory gave no message id for any question (passages alone, e.g. summaries).
    A memory that gives ids has recall 0 where it gave none: left out, those questions would raise its mean."""
    if not claims:
        for item in items:
            item.recall = None
    return items
