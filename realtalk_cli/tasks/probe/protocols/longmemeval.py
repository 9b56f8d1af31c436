"""LongMemEval's long-context setting, byte for byte (`probe --compat longmemeval`).

Source: xiaowu0162/LongMemEval (commit 9e0b455), `src/generation/run_generation.py` as its README runs it for the
long-context setting: `run_generation.sh FILE MODEL full-history-session 1000 json false con`, i.e. retriever
`orig-session` (every session, the last `topk` = 1000 by position kept), history as JSON, user and assistant turns
(`useronly false`), reading method `con` = `--cot true`. Facts and exact strings: shared/LITERATURE_PROTOCOLS.md
§2.2 (the answer template's SHA-256 `9e2b3110…`).

- Items: every instance of the file, in order (of `--category` when given: a question type), one question each;
  its prompt is built when its request is, from the instance read again from the file, so that a run holds no
  haystack but those in flight.
- History: the sessions in file order (the last 1000), `has_answer` deleted from every turn (other keys and their
  order stay), sorted by the date string (stable), each as `\\n### Session {i}:\\nSession Date: {date}\\nSession
  Content:\\n{json}\\n` with `json.dumps` defaults (", " and ": " separators, ASCII escapes).
- Prompt: the `--cot true` template, `str.format(history, question_date, question)`, one user message.
- Request: `temperature 0`, `max_tokens 800` (the script's `gen_length` in every mode: it tests `not args.cot` on
  the string "false", which is truthy). Its `n=1` is the API's default and is not sent. The reply is stripped.
- Judge: LongMemEval's (judges/longmemeval.py). The script grades with `gpt-4o-2024-08-06`; realtalk grades with
  the `--judge-model` given (none: F1 only) and the report names it.

What the source leaves open (shared/LITERATURE_PROTOCOLS.md §7), chosen here and written in the run's manifest:
- Truncation: the script cuts the history to its first `128,000 - 800 - 1,000 = 126,200` tokens (o200k_base,
  `<|endoftext|>` allowed as a special token) for the model names it lists with an OpenAI tokenizer
  (`gpt-4o`, `gpt-4o-2024-08-06`, `gpt-4o-mini-2024-07-18`; a provider prefix like `openai/` is ignored); so does
  realtalk. For the Hugging Face models it lists (Llama 3.1, Phi-3, Mistral, FILM) it cuts with their own
  tokenizer, which realtalk does not load: their histories are sent whole. Any other name stops the script with
  a KeyError: realtalk sends the whole history. Other special-token text (`<|endofprompt|>`), on which the
  script's tokenizer raises, is counted as plain text.
- Other data: the prompt needs `question_date`, `question_type` and user/assistant turns, which REALTALK and
  LoCoMo items lack: `--compat longmemeval` on such a file is one line, exit 2 (realtalk's own protocol reads
  LongMemEval files, with --context and --memory).
- An instance with an empty haystack stops the script (an assertion); here it is one line, exit 2.
- Batch jobs are not offered: a full-context run's prompts (~260 MB for LongMemEval-S) exceed a batch input
  file's 200 MB and would all be held at once.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from realtalk_cli.data.formats import chat_files, file_layout
from realtalk_cli.data.longmemeval import InstanceRef, instance_chat, iter_instances, skeleton
from realtalk_cli.data.model import matches_category
from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.tokens import encoding
from realtalk_cli.tasks.probe.items import Item
from realtalk_cli.tasks.probe.protocol import ProbeProtocol
from realtalk_cli.tasks.prompts import text_hash

SOURCE = (
    "xiaowu0162/LongMemEval 9e0b455: src/generation/run_generation.py, run_generation.sh FILE MODEL "
    "full-history-session 1000 json false con (orig-session, topk 1000, json history, useronly false, cot true)"
)
ANSWER_PROMPT = (
    "I will give you several history chats between you and a user. Please answer the question based on the relevant "
    "chat history. Answer the question step by step: first extract all the relevant information, and then reason "
    "over the information to get the answer.\n\n\nHistory Chats:\n\n{}\n\nCurrent Date: {}\nQuestion: {}\n"
    "Answer (step by step):"
)
SESSION_BLOCK = "\n### Session {}:\nSession Date: {}\nSession Content:\n{}\n"
TOPK = 1000  # the README's long-context command
GEN_LENGTH = 800  # max_tokens in every reading mode (see the docstring)
RESERVED = 1000  # run_generation.py: max_retrieval_length = model2maxlength[model] - gen_length - 1000
MODEL_MAX_LENGTH = {  # run_generation.py model2maxlength
    "gpt-4o": 128000,
    "gpt-4o-2024-08-06": 128000,
    "gpt-4o-mini-2024-07-18": 128000,
    "meta-llama/Meta-Llama-3.1-8B-Instruct": 128000,
    "meta-llama/Meta-Llama-3.1-70B-Instruct": 128000,
    "microsoft/Phi-3-medium-128k-instruct": 120000,
    "mistral-7b-instruct-v0.2": 32000,
    "mistral-7b-instruct-v0.3": 32000,
    "In2Training/FILM-7B": 32000,
}
PUBLISHED_JUDGE = "gpt-4o-2024-08-06"


def history_string(instance: dict) -> str:
    """run_generation.py's history for `orig-session` with `json` format (it changes the instance's turns)."""
    chunks = list(zip(instance["haystack_dates"], instance["haystack_sessions"], strict=False))[-TOPK:]
    for _, session in chunks:
        for turn in session:
            if type(turn) is dict and "has_answer" in turn:
                turn.pop("has_answer")
    chunks.sort(key=lambda chunk: chunk[0])
    return "".join(
        SESSION_BLOCK.format(i + 1, date, "\n" + json.dumps(session)) for i, (date, session) in enumerate(chunks)
    )


def openai_budget(model: str) -> int | None:
    """The history's token budget when run_generation.py cuts it with o200k_base for this model name, else None."""
    name = model.rsplit("/", 1)[-1]
    if name in MODEL_MAX_LENGTH and ("gpt-4" in name.lower() or "gpt-3.5" in name.lower()):
        return MODEL_MAX_LENGTH[name] - GEN_LENGTH - RESERVED
    return None


def cut_history(history: str, budget: int) -> str:
    """The first `budget` o200k_base tokens of the history, decoded, as run_generation.py truncates it."""
    if len(history.encode("utf-8")) <= budget:  # a token is at least one byte
        return history
    enc = encoding("o200k_base")
    tokens = enc.encode(history, allowed_special={"<|endoftext|>"}, disallowed_special=())
    return enc.decode(tokens[:budget]) if len(tokens) > budget else history


def history_tokens(history: str) -> int:
    enc = encoding("o200k_base")
    return len(enc.encode(history, allowed_special={"<|endoftext|>"}, disallowed_special=()))


def prompt(instance: dict, budget: int | None = None) -> str:
    """The whole prompt of one instance (`budget`: cut the history to that many tokens)."""
    history = history_string(instance)
    if budget is not None:
        history = cut_history(history, budget)
    return ANSWER_PROMPT.format(history, instance["question_date"], instance["question"])


def _prompt_again(ref: InstanceRef, budget: int | None) -> str:
    return prompt(ref.read(), budget)


class LongMemEvalProtocol(ProbeProtocol):
    """`--compat longmemeval`: LongMemEval's long-context setting (full history, JSON, chain of thought)."""

    name = "longmemeval"
    answer_params = {"temperature": 0, "max_tokens": GEN_LENGTH}
    judge = "longmemeval"
    takes_context = False
    batch = False

    def __init__(self) -> None:
        self.model = ""
        self.instances = 0
        self.cut = 0  # histories longer than the budget, cut to it

    def prompt_hashes(self) -> dict[str, str]:
        return {"longmemeval:answer": text_hash(ANSWER_PROMPT), "longmemeval:session": text_hash(SESSION_BLOCK)}

    def build_items(self, files, opts, model, memories) -> list[Item]:
        self.model = model
        budget = openai_budget(model)
        items: list[Item] = []
        seen: dict[str, Path] = {}
        for chat_file in chat_files(files)[0]:  # each content once, as every protocol reads its chats
            path = chat_file.path
            if not path.is_file() or file_layout(path) != "longmemeval":
                raise RealtalkError(
                    f"{path}: --compat longmemeval reads LongMemEval files (a JSON list of instances with "
                    "question_type, question_date and user/assistant turns); for REALTALK or LoCoMo chats use "
                    "realtalk's own protocol (no --compat) or another --compat"
                )
            for ref, instance in iter_instances(path):
                chat = instance_chat(instance, ref)  # every field checked before any request
                if ref.question_id in seen:
                    raise RealtalkError(f"{ref.where}: question_id also in {seen[ref.question_id]}; give it once")
                seen[ref.question_id] = path
                qa = chat.qa[0]
                if opts.category is not None and not matches_category(qa.category, qa.category_name, opts.category):
                    continue
                if not chat.sessions:
                    raise RealtalkError(f"{ref.where}: the haystack is empty (LongMemEval's script stops on it)")
                cut = None
                if budget is not None:
                    history = history_string(instance)
                    if len(history.encode("utf-8")) > budget and history_tokens(history) > budget:
                        cut = budget
                        self.cut += 1
                self.instances += 1
                items.append(Item.with_lazy_prompt(skeleton(chat), path, 0, qa, partial(_prompt_again, ref, cut)))
                if opts.limit is not None and len(items) >= opts.limit:
                    return items
        return items

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict:
        budget = openai_budget(self.model)
        if budget is not None:
            truncation = (
                f"the history cut to its first {budget:,} o200k_base tokens when longer, as run_generation.py does "
                f"for {self.model}: {self.cut} of {self.instances} histories cut"
            )
        elif self.model in MODEL_MAX_LENGTH:
            truncation = (
                f"none: run_generation.py cuts {self.model}'s history with its Hugging Face tokenizer, which "
                "realtalk does not load; whole histories sent"
            )
        else:
            truncation = (
                f"none: run_generation.py knows no context length for {self.model} (it stops with a KeyError); "
                "whole histories sent (shared/LITERATURE_PROTOCOLS.md §7.4)"
            )
        if judge is None:
            judged = (
                f"none given (F1 only): LongMemEval grades with {PUBLISHED_JUDGE}; pass --judge-model "
                f"{PUBLISHED_JUDGE} for its judge"
            )
        elif judge.rsplit(":", 1)[-1] == PUBLISHED_JUDGE:
            judged = f"{judge} with LongMemEval's prompts, as its evaluate_qa.py"
        else:
            judged = (
                f"{judge} with LongMemEval's prompts (--judge-model; LongMemEval's published numbers: "
                f"{PUBLISHED_JUDGE})"
            )
        return {
            "compat": self.name,
            "source": SOURCE,
            "sessions": f"every session (the last {TOPK} by position), sorted by date string, each as JSON",
            "request_parameters": f"temperature 0, max_tokens {GEN_LENGTH} (n=1 is the API default, not sent)",
            "truncation": truncation,
            "judge": judged,
        }
