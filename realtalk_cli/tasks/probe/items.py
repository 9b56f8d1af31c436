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
from realtalk_cli.errors import RealtalkError
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
    # The context built only when the request is: a LongMemEval haystack is read again from its file then, so
    # that a run does not hold every instance's haystack (`values["context"]` is not used when this is set).
    context_of: Callable[[], str] | None = None

    @classmethod
    def with_prompt(cls, chat: Chat, chat_file: Path, qa_index: int, qa: QAItem, prompt: str) -> Item:
        """An item whose prompt is given whole (the paper's protocol builds its own)."""
        return cls(chat, chat_file, qa_index, qa, "{prompt}", {"prompt": prompt})

    @classmethod
    def with_lazy_prompt(
        cls, chat: Chat, chat_file: Path, qa_index: int, qa: QAItem, prompt: Callable[[], str]
    ) -> Item:
        """An item whose whole prompt is built when the request is (LongMemEval's protocol)."""
        return cls(chat, chat_file, qa_index, qa, "{context}", {}, context_of=prompt)

    @property
    def messages(self) -> list[dict]:
        """The request, built when asked for: a run holds one context per chat, not one per question."""
        context = self.context_of() if self.context_of is not None else self.values.get("context", "")
        content = fill(self.template, **{**self.values, "context": context})
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*head, {"role": self.role, "content": content}]

    @property
    def shares_context(self) -> bool:
        """Whether the chat's other questions send the same context (full and events do; retrieval does not)."""
        return self.retrieved is None and self.context_of is None and bool(self.values.get("context"))

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
    most --limit in all. A chat with none is left out, so nothing is built or ingested for it. One chat per file:
    a LongMemEval file is one line, exit 2 (protocols that read it use `chosen_chats`)."""
    for path, chat, _, questions in chosen_chats(files, opts, asks, haystacks=False):
        yield path, chat, questions


def chosen_chats(
    files: list[Path], opts, asks: Callable[[Chat, QAItem], bool] | None = None, haystacks: bool = True
) -> Iterator[tuple[Path, Chat, Callable[[], Chat] | None, list[tuple[int, QAItem]]]]:
    """`chosen_questions`, also over LongMemEval files (`haystacks`: one chat per instance, named by its
    question_id, read one at a time), with each chat's way to be read again (None: a one-chat file, keep it). A
    LongMemEval question_id met in two files is one line, exit 2: its rows would overwrite each other."""
    left = opts.limit
    seen: dict[str, Path] = {}
    for chat_file in chat_files(files)[0]:  # each content once; chat.name is the chat's id in the run
        path = chat_file.path
        for chat, reload in chat_file.chats() if haystacks else [(chat_file.load(), None)]:
            if chat.name in seen:
                raise RealtalkError(
                    f"{path}: chat {chat.name} is also in {seen[chat.name]}; a run takes each chat once "
                    "(LongMemEval: each question_id)"
                )
            seen[chat.name] = path
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
                yield path, chat, reload, questions
            if left == 0:
                return
