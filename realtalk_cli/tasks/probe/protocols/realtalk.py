"""realtalk's own probe protocol (the default): the whole chat oldest first (or its events, or what a retriever
or memory recalls), the editable answer prompts of configs/prompts, a date hint on temporal questions,
LoCoMo's adversarial questions as its two-choice prompt, temperature 0 and short answers.

With a retriever or memory, `--context-tokens N` bounds each question's whole prompt (instructions, question and
context, counted as the endpoint counts a request): the memory fills what is left after the rest.

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
from realtalk_cli.llm.tokens import count_message_tokens, count_tokens, counted_with
from realtalk_cli.scoring.evidence import evidence_recall
from realtalk_cli.tasks.memory.packing import in_prompt
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
    if memories is not None:
        memories.counted_with = counted_with(model_name)
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
            values = {"speaker_1": chat.speaker_1, "speaker_2": chat.speaker_2, "context": full_context}
            options = None
            if adversarial:
                options = adversarial_options(qa)
                template = templates.adversarial
                values.update(question=qa.question, option_a=options["a"], option_b=options["b"])
            else:
                template = templates.answer
                values["question"] = qa.question + _after_question(qa)
            item = Item(kept_chat, path, i, qa, template, values, dropped_sessions=dropped, options=options)
            item.context_of = context_of
            if ask is not None:
                recall_into(item, ask, opts.context_tokens, model_name, index)
                claims = claims or item.claims
            items.append(item)
    return recall_if_claimed(items, claims)


def recall_into(item: Item, ask, limit: int, model: str, index: dict) -> None:
    """Fill `item`'s context with what the memory recalls, its whole prompt within `limit` tokens; set its recall
    from the prompt's text (`recall`) and from the ids the memory claims (`recall_claimed`)."""

    def over(context: str) -> int:  # tokens by which the whole prompt would exceed the limit
        item.values["context"] = context
        return count_message_tokens(item.messages, model)[0] - limit

    rest = over("")  # the prompt without a context: instructions and question
    try:
        recalled = ask(item.qa.question, max(0, -rest), f"{item.chat.name} #{item.qa_index}", over)
    except CallTimeout as e:
        item.values["context"], item.error = "", str(e)
        return
    item.values["context"] = recalled.context
    item.retrieved, item.context_tokens, item.claims = recalled.ids, recalled.tokens, recalled.claims
    evidence = resolve_evidence(item.chat, item.qa.evidence, index).resolved
    item.recall = evidence_recall(evidence, in_prompt(recalled, [index[e] for e in evidence]))
    item.recall_claimed = evidence_recall(evidence, recalled.ids)


def _after_question(qa: QAItem) -> str:
    """What follows the question: a LongMemEval question's own date; the date hint of temporal questions."""
    if qa.question_date is not None:
        return QUESTION_DATE.replace("{date}", qa.question_date)
    return TEMPORAL_HINT if qa.category == 2 else ""


def _render_again(reload, mode, kept: list[int]) -> str:
    chat: Chat = reload()
    return render_sessions(chat, mode, kept)
