"""realtalk's own probe protocol (the default): the whole chat oldest first (or its events, or what a retriever
or memory recalls), the editable answer prompts of configs/prompts, a date hint on temporal questions,
LoCoMo's adversarial questions as its two-choice prompt, temperature 0 and short answers.
"""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.data.evidence import resolve_evidence
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.scoring.evidence import evidence_recall
from realtalk_cli.tasks.memory.runner import CallTimeout, MemoryRunner, memory_choice
from realtalk_cli.tasks.probe.items import Item, adversarial_options, chosen_questions, recall_if_claimed
from realtalk_cli.tasks.probe.prompts import TEMPORAL_HINT, Templates, fit_sessions
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
    for path, chat, questions in chosen_questions(files, opts):  # chat.name: the chat's id in this run
        full_context, dropped = ("", 0)
        if choice is None:
            full_context, dropped = fit_sessions(chat, opts.context, model_name, opts.max_context_tokens)
        ask = memories.open(chat) if memories is not None else None
        index = chat.message_index()
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
                values["question"] = qa.question + (TEMPORAL_HINT if qa.category == 2 else "")
            items.append(
                Item(chat, path, i, qa, template, values, retrieved, recall, context_tokens, dropped, options, error)
            )
    return recall_if_claimed(items, claims)
