"""A probe item: one question of one chat with its prompt, as every protocol builds it, and what the answer row
needs from it (the context chosen, its evidence recall, LoCoMo's two-choice options).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from realtalk_cli.data.formats import chat_files
from realtalk_cli.data.model import Chat, QAItem, matches_category
from realtalk_cli.tasks.prompts import fill

NOT_MENTIONED = "Not mentioned in the conversation"


@dataclass
class Item:
    chat: Chat
    chat_file: Path
    qa_index: int
    qa: QAItem
    template: str
    values: dict[str, str]  # the context string is shared by a chat's items, never copied
    retrieved: list[str] | None = None  # message ids shown or claimed, when a retriever or memory chose the context
    recall: float | None = None  # evidence recall read from the prompt's text; None when unavailable
    context_tokens: int | None = None
    dropped_sessions: int = 0
    options: dict[str, str] | None = None  # LoCoMo adversarial two-choice question
    error: str | None = None  # the memory's recall failed (past --memory-timeout): not asked, an error row
    system: str | None = None  # a system message sent before the prompt (mem0's full-context protocol)
    role: str = "user"  # the prompt's role (LoCoMo sends gpt-3.5 models the prompt as a system message)
    recall_claimed: float | None = None  # evidence recall of the ids the memory gave (shown or claimed)
    claims: bool = False  # whether the memory gave any message id for this question

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
            content = fill(self.template, **self.values)
        else:  # the same text as filling every key in order, without scanning the long context once per key
            content = fill(self.template, **rest).replace("{context}", context)
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*head, {"role": self.role, "content": content}]

    @property
    def shares_context(self) -> bool:
        """Whether the chat's other questions send the same context (full and events do; retrieval does not)."""
        return self.retrieved is None and bool(self.values.get("context"))

    def prefix(self) -> str:
        """The prompt up to the question: what a provider's prompt cache can serve for the chat's other questions."""
        head = self.template.split("{question}")[0]
        return fill(head, **{k: v for k, v in self.values.items() if k in ("speaker_1", "speaker_2", "context")})


# Dates written out, never in the DATE lines' raw format (29.12.2023 would score 0 against "29 December 2023").


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


def recall_if_claimed(items: list[Item], claims: bool) -> list[Item]:
    """Recall is unavailable when the memory gave no message id for any question (passages alone, e.g. summaries).
    A memory that gives ids has recall 0 where it gave none: left out, those questions would raise its mean."""
    if not claims:
        for item in items:
            item.recall = item.recall_claimed = None
    return items


def chosen_questions(
    files: list[Path], opts, asks: Callable[[Chat, QAItem], bool] | None = None
) -> Iterator[tuple[Path, Chat, list[tuple[int, QAItem]]]]:
    """Each chat with the questions a run asks of it (index in `qa`, question), in file order: those the
    protocol asks (`asks`), without LoCoMo's category 5 under --skip-adversarial, of --category when given, at
    most --limit in all. A chat with none is left out, so nothing is built or ingested for it."""
    left = opts.limit
    for chat_file in chat_files(files)[0]:  # each content once; chat.name is the chat's id in the run
        path, chat = chat_file.path, chat_file.load()
        questions = [
            (i, qa)
            for i, qa in enumerate(chat.qa)
            if (asks is None or asks(chat, qa))
            and not (opts.skip_adversarial and chat.dataset == "locomo" and qa.category == 5)
            and (opts.category is None or matches_category(qa.category, qa.category_name, opts.category))
        ]
        if left is not None:
            questions = questions[:left]
            left -= len(questions)
        if questions:
            yield path, chat, questions
        if left == 0:
            return
