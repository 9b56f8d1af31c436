"""LoCoMo's own QA protocol, byte for byte (`probe --compat locomo`).

Source: snap-research/locomo `task_eval/` (commit 3eb6f2c): `gpt_utils.py` `get_gpt_answers` (prompt, L207-349),
`get_input_context` (L172-204), `global_methods.run_chatgpt` (request), `evaluation.py` (scores); facts and exact
strings in `shared/LITERATURE_PROTOCOLS.md` §3.

- Opening: `CONV_START_PROMPT` (typo `wriiten` kept) with two names; context: every key containing "session"
  and not "date_time" gives N, sessions min(N)..max(N) each once, newest first, every turn
  `speaker said, "text"` + newline (+ ` and shared CAPTION.` where the turn has `blip_caption`) + an empty line,
  and "\\n\\n" per session at the very end; turn text `clean_text` where the key exists (REALTALK), else `text`.
- Prompt: opening + context + "\\n\\n" + `QA_PROMPT` with the question; category 2 adds LoCoMo's date hint.
- Request: one user message (the script's gpt-4 path; a model named `gpt-3.5...` gets it as one system message,
  as the script sends it), temperature 0, max_tokens 32. The prediction is the reply stripped.
- No judge: F1 only unless `--judge-model` asks for one. LoCoMo's F1 (each item rounded to 3 decimals before
  any mean) is kept as `f1_locomo` beside realtalk's unrounded `f1`.

Choices where the script cannot run as written (each stated in the run's manifest):
- Speaker order: the script takes Python's set order of session 1's speakers (it changes between processes);
  we take the order of first appearance, as for the paper's protocol.
- Token budget: the script truncates only for the models it names (gpt-4-turbo 128,000 tokens, gpt-4 4,096,
  gpt-4-32k 320,000, gpt-3.5-turbo 4k-16k; any other name is a KeyError): for those names its rule is applied
  (turns added newest first while opening, context and question stay under the limit minus 50 tokens, turns
  counted one by one); other models get the whole chat.
- Category 5: the script reads `qa["answer"]`, which 444 of 446 adversarial items lack (KeyError). We ask them
  with LoCoMo's two-choice prompt, taking `adversarial_answer` as the second option, the order drawn from the
  question's hash (the script's is unseeded `random`), and map the reply back by the script's rule.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.client import Completion, Usage
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.scoring.literature import locomo_f1
from realtalk_cli.tasks.probe.items import NOT_MENTIONED, Item, adversarial_options, chosen_questions
from realtalk_cli.tasks.probe.protocol import ProbeProtocol
from realtalk_cli.tasks.probe.protocols.paper import conversation, load_file, opening_speakers
from realtalk_cli.tasks.prompts import text_hash

CONV_START_PROMPT = (
    "Below is a conversation between two people: {} and {}. The conversation takes place over multiple days and "
    "the date of each conversation is wriiten at the beginning of the conversation.\n\n"
)
QA_PROMPT = (
    "\nBased on the above context, write an answer in the form of a short phrase for the following question. "
    "Answer with exact words from the context whenever possible.\n\nQuestion: {} Short answer:\n"
)
QA_PROMPT_CAT_5 = "\nBased on the above context, answer the following question.\n\nQuestion: {} Short answer:\n"
QA_PROMPT_BATCH = (
    "\nBased on the above conversations, write short answers for each of the following questions in a few words. "
    '\nWrite the answers in the form of a json dictionary where each entry contains the question number as "key" '
    'and the short answer as "value". \nUse single-quote characters for named entities and double-quote characters '
    "for enclosing json elements. Answer with exact words from the conversations whenever possible.\n\n"
)
BATCH_SIZE = 20  # scripts/evaluate_gpts.sh: --batch-size 20 for gpt-4-turbo (10 for gpt-3.5)
PER_QA_TOKEN_BUDGET = 50
DATE_HINT = " Use DATE of CONVERSATION to answer with an approximate date."
OPTIONS = " Select the correct answer: (a) {} (b) {}. "
MAX_LENGTH = {
    "gpt-4-turbo": 128000,
    "gpt-3.5-turbo-4k": 4000,
    "gpt-3.5-turbo-8k": 8000,
    "gpt-3.5-turbo-12k": 12000,
    "gpt-3.5-turbo-16k": 16000,
    "gpt-4": 4096,
    "gpt-4-32k": 320000,
}
SOURCE = "snap-research/locomo 3eb6f2c: task_eval/gpt_utils.py, global_methods.py, evaluation.py"


def fill(template: str, *values: str) -> str:
    """`template.format(*values)` for `{}` fields, without reading braces inside the values."""
    parts = template.split("{}")
    out = parts[0]
    for value, part in zip(values, parts[1:], strict=True):
        out += value + part
    return out


def _turn(m: dict) -> str:
    text = m["clean_text"] if "clean_text" in m else m["text"]
    turn = m["speaker"] + ' said, "' + text + '"' + "\n"
    if "blip_caption" in m:
        turn += " and shared %s." % m["blip_caption"]  # noqa: UP031  (the script's own formatting)
    return turn + "\n"


def session_numbers(conv: dict) -> list[int]:
    numbers = set()
    for key in conv:
        if "session" in key and "date_time" not in key:
            tail = key.rsplit("_", 1)[-1]
            if tail.isdigit():
                numbers.add(int(tail))
    return list(range(min(numbers), max(numbers) + 1)) if numbers else []


def context(conv: dict, budget: int | None = None, count=None) -> str:
    """`get_input_context`: newest session first. With a `budget` (tokens left for the context, when one
    applies) turns are counted with `count` as they are added; at the first that does not fit, that session
    keeps its later turns and every newer session is dropped."""
    query, used = "", 0
    for i in session_numbers(conv):
        turns = conv.get(f"session_{i}")
        if turns is None:
            continue
        query += "\n\n"
        header = f"DATE: {conv[f'session_{i}_date_time']}\nCONVERSATION:\n"
        for m in reversed(turns):
            turn = _turn(m)
            if budget is not None:
                used += count(turn)
                if used + count(header) >= budget:
                    return header + query
            query = turn + query
        query = header + query
    return query


def question_text(qa: dict, options: dict[str, str] | None) -> tuple[str, str]:
    """(the question as asked, the QA prompt it goes into)."""
    question = str(qa.get("question", ""))
    if options is not None:
        return question + fill(OPTIONS, options["a"], options["b"]), QA_PROMPT_CAT_5
    if qa.get("category") == 2:
        question += DATE_HINT
    return question, QA_PROMPT


def prompt(
    conv: dict, qa: dict, speakers: tuple[str, str], options: dict[str, str] | None = None, budget=None, count=None
) -> str:
    question, template = question_text(qa, options)
    return fill(CONV_START_PROMPT, *speakers) + context(conv, budget, count) + "\n\n" + fill(template, question)


class LocomoProtocol(ProbeProtocol):
    name = "locomo"
    answer_params = {"temperature": 0.0, "max_tokens": 32}
    judge = "realtalk"  # only with --judge-model: LoCoMo itself has no judge
    takes_context = False
    batch = False

    def prompt_hashes(self) -> dict[str, str]:
        return {
            "locomo:start": text_hash(CONV_START_PROMPT),
            "locomo:qa": text_hash(QA_PROMPT),
            "locomo:qa_cat_5": text_hash(QA_PROMPT_CAT_5),
        }

    def build_items(self, files: list[Path], opts, model: str, memories) -> list[Item]:
        items: list[Item] = []
        system = "gpt-3.5" in model  # the script sends gpt-3.5 models the prompt as a system message
        for path, chat, questions in chosen_questions(files, opts):
            data = load_file(path)
            conv, file_qa = conversation(data), data.get("qa") or []
            speakers = opening_speakers(conv)
            limit = MAX_LENGTH.get(model)
            count = lru_cache(maxsize=None)(lambda text: count_tokens(text, model)[0])
            for i, qa in questions:
                options = adversarial_options(qa) if qa.category == 5 and chat.dataset == "locomo" else None
                raw = file_qa[i]  # the question as the file writes it, as the script reads it
                budget = None
                if limit is not None:  # what is left for the context: the limit minus 50, opening and question
                    asked = count(question_text(raw, options)[0]) + count(fill(CONV_START_PROMPT, *speakers))
                    budget = limit - 50 - asked
                try:
                    text = prompt(conv, raw, speakers, options, budget, count)
                except KeyError as e:
                    raise RealtalkError(f"{path}: missing key {e} that LoCoMo's script reads") from None
                item = Item.with_prompt(chat, path, i, qa, text)
                item.options = options
                if system:
                    item.role = "system"
                items.append(item)
        return items

    def scores(self, row: dict) -> dict[str, float]:
        gold = row.get("answer", row.get("adversarial_answer")) or ""
        return {"f1_locomo": locomo_f1(row["prediction"], gold, row["category"], row["dataset"])}

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict:
        return {
            "compat": self.name,
            "source": SOURCE,
            "sessions": "each once, newest first",
            "speaker_order": "first appearance in session 1 (the script's set order varies between processes)",
            "request_parameters": "one user message (one system message for gpt-3.5 names), temperature 0, "
            "max_tokens 32",
            "truncation": f"LoCoMo's rule for {answering}"
            if answering.split(":")[-1] in MAX_LENGTH
            else "none: the whole chat (LoCoMo truncates only for the models it names)",
            "category_5": f"asked as LoCoMo's two-choice question with adversarial_answer and {NOT_MENTIONED!r} "
            "in a hash-drawn order (the script's path raises KeyError on the released data)",
            "judge": judge or "none (LoCoMo scores F1 only)",
            "f1": "f1_locomo: LoCoMo's F1, each item rounded to 3 decimals before the mean",
        }


class LocomoBatchedProtocol(LocomoProtocol):
    """`--compat locomo-batched`: LoCoMo's batched form, the one its published numbers came from
    (`scripts/evaluate_gpts.sh`): a chat's questions asked 20 at a time, in file order, as
    opening + context + "\\n" + `QA_PROMPT_BATCH` + "k: question" lines (k from 0; category 2 with the date hint,
    category 5 with its two options), `max_tokens` 50 per question of a full batch, temperature 0; the reply read
    as a JSON object keyed "0", "1", ... (a fenced block's inside when the reply is fenced). A reply that is no
    such object, or lacks a question's key, is an error for those questions (asked again by the next run). The
    request's usage is counted once, on the first question of its batch. Batches are formed anew from the
    questions still unanswered, as the script skips answered ones."""

    name = "locomo-batched"
    answer_params = {"temperature": 0.0, "max_tokens": PER_QA_TOKEN_BUDGET * BATCH_SIZE}

    def prompt_hashes(self) -> dict[str, str]:
        return {**super().prompt_hashes(), "locomo:qa_batch": text_hash(QA_PROMPT_BATCH)}

    def build_items(self, files: list[Path], opts, model: str, memories) -> list[Item]:
        self.model = model
        self.chats: dict[Path, tuple[dict, tuple[str, str]]] = {}
        items: list[Item] = []
        for path, chat, questions in chosen_questions(files, opts):
            data = load_file(path)
            conv, file_qa = conversation(data), data.get("qa") or []
            self.chats[path] = (conv, opening_speakers(conv))
            for i, qa in questions:
                options = adversarial_options(qa) if qa.category == 5 and chat.dataset == "locomo" else None
                question = question_text(file_qa[i], options)[0]
                item = Item(chat, path, i, qa, "{question}", {"question": question}, options=options)
                if "gpt-3.5" in model:
                    item.role = "system"
                items.append(item)
        return items

    def requests(self, items: list[Item]) -> list[list[Item]]:
        groups: list[list[Item]] = []
        for item in items:
            if groups and groups[-1][0].chat_file == item.chat_file and len(groups[-1]) < BATCH_SIZE:
                groups[-1].append(item)
            else:
                groups.append([item])
        return groups

    def request(self, group: list[Item]) -> list[dict]:
        conv, speakers = self.chats[group[0].chat_file]
        questions = QA_PROMPT_BATCH + "\n".join(f"{k}: {item.values['question']}" for k, item in enumerate(group))
        start = fill(CONV_START_PROMPT, *speakers)
        limit = MAX_LENGTH.get(self.model)
        try:
            if limit is None:
                text = start + context(conv)
            else:
                count = lambda text: count_tokens(text, self.model)[0]  # noqa: E731
                budget = limit - PER_QA_TOKEN_BUDGET * BATCH_SIZE - count(questions) - count(start)
                text = start + context(conv, budget, lru_cache(maxsize=None)(count))
        except KeyError as e:
            raise RealtalkError(f"{group[0].chat_file}: missing key {e} that LoCoMo's script reads") from None
        return [{"role": group[0].role, "content": text + "\n" + questions}]

    def replies(self, group: list[Item], completion: Completion) -> list[Completion]:
        shares = [completion.usage] + [Usage() for _ in group[1:]]
        if completion.error is not None:
            return [Completion("", usage, completion.error) for usage in shares]
        answers = batched_answers(completion.text)
        if answers is None:
            error = f"the batched reply is no JSON object keyed by question number: {completion.text[:80]!r}"
            return [Completion(completion.text, usage, error) for usage in shares]
        out = []
        for k, usage in enumerate(shares):
            value = answers.get(str(k))
            if value is None:
                out.append(Completion("", usage, f"the batched reply has no answer for question {k}"))
            else:
                out.append(Completion(value if isinstance(value, str) else json.dumps(value), usage))
        return out

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict:
        return {
            **super().describe(judge, answering, judge_given),
            "batch": f"{BATCH_SIZE} questions per request (evaluate_gpts.sh's gpt-4-turbo setting; gpt-3.5 used 10), "
            f"max_tokens {PER_QA_TOKEN_BUDGET * BATCH_SIZE}; the request's tokens counted on its first question",
        }


def batched_answers(text: str) -> dict | None:
    """The JSON object of a batched reply (inside a code fence if there is one), or None."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
