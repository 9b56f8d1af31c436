"""realtalk's own probe protocol (the default): the whole chat oldest first (or its events, or what a retriever
or memory recalls), the editable answer prompts of configs/prompts, a date hint on temporal questions,
LoCoMo's adversarial questions as its two-choice prompt, temperature 0 and short answers.

LongMemEval files: each instance is a chat of its own (speakers `user` and `assistant`), ingested on its own by
a retriever or memory; its question carries its date (" (Current date: ...)" after the question, as LongMemEval's
prompt gives the model the `question_date`); no temporal hint (its type numbers are not LoCoMo's). A full
context is built when the request is, from the file, so that a run holds no haystack but those in flight.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from realtalk_cli.data.evidence import resolve_evidence
from realtalk_cli.data.longmemeval import skeleton
from realtalk_cli.data.model import Chat, QAItem
from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.scoring.evidence import evidence_recall
from realtalk_cli.tasks.memory.runner import CallTimeout, MemoryRunner, memory_choice
from realtalk_cli.tasks.probe.items import Item, adversarial_options, chosen_chats, recall_if_claimed
from realtalk_cli.tasks.probe.prompts import (
    QUESTION_DATE,
    TEMPORAL_HINT,
    Templates,
    fit_sessions,
    fitted_sessions,
    render_sessions,
)
from realtalk_cli.tasks.probe.protocol import ProbeProtocol

ANSWER_MAX_TOKENS = 32  # as the paper's script: answers are short phrases


class RealtalkProtocol(ProbeProtocol):
    name = "realtalk"
    answer_params = {"temperature": 0.0, "max_tokens": ANSWER_MAX_TOKENS}

    def __init__(self) -> None:
        self.templates = Templates.load()

    def prompt_hashes(self) -> dict[str, str]:
        return self.templates.hashes()

    def build_items(self, files, opts, model, memories) -> list[Item]:
        return build_items(files, opts, self.templates, model, memories)


def build_items(
    files: list[Path], opts, templates: Templates, model_name: str, memories: MemoryRunner | None = None
) -> list[Item]:
    """One prompt per question. `memories` runs the retriever or memory (one without an LLM is made when omitted)."""
    choice = memory_choice(opts.context, opts.memory, opts.memory_options, opts.top_k, opts.embedder)
    if choice is not None and memories is None:
        memories = MemoryRunner(choice, lambda text: count_tokens(text, model_name)[0])
    try:
        items = _build_items(files, opts, templates, model_name, choice, memories)
    except KeyboardInterrupt:
        raise  # the process ends at once: nothing waits on the memory
    except BaseException:
        if memories is not None:
            memories.release()
        raise
    if memories is not None:
        memories.release()  # the last chat's memory: its __del__ guarded like its other calls
    return items


def _build_items(files, opts, templates: Templates, model_name: str, choice, memories) -> list[Item]:
    items: list[Item] = []
    claims = False  # whether the memory gave any message id in this run
    for path, chat, reload, questions in chosen_chats(files, opts):  # chat.name: the chat's id in this run
        if chat.dataset == "longmemeval" and opts.context == "events":
            raise RealtalkError(f"{path}: --context events: LongMemEval haystacks have no events")
        full_context, dropped, context_of = "", 0, None
        if choice is None:
            if reload is None:
                full_context, dropped = fit_sessions(chat, opts.context, model_name, opts.max_context_tokens)
            else:  # counted now, rendered again from the file when its question is asked
                kept = fitted_sessions(chat, opts.context, model_name, opts.max_context_tokens)
                dropped = sum(1 for s in chat.sessions if s.messages) - len(kept)
                context_of = partial(_render_again, reload, opts.context, kept)
        ask = memories.open(chat) if memories is not None else None
        index = chat.message_index()
        kept_chat = chat if reload is None else skeleton(chat)  # a haystack is not kept past its questions
        for i, qa in questions:
            adversarial = chat.dataset == "locomo" and qa.category == 5
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
                values["question"] = qa.question + _after_question(qa)
            item = Item(kept_chat, path, i, qa, template, values, retrieved, recall, context_tokens, dropped)
            item.options, item.error, item.context_of = options, error, context_of
            items.append(item)
    return recall_if_claimed(items, claims)


def _after_question(qa: QAItem) -> str:
    """What follows the question: a LongMemEval question's own date; the date hint of temporal questions."""
    if qa.question_date is not None:
        return QUESTION_DATE.replace("{date}", qa.question_date)
    return TEMPORAL_HINT if qa.category == 2 else ""


def _render_again(reload, mode, kept: list[int]) -> str:
    chat: Chat = reload()
    return render_sessions(chat, mode, kept)
