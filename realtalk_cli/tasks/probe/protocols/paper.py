"""The paper's memory-probing protocol, byte for byte (`probe --compat paper`).

Source: the REALTALK repository (danny911kr/REALTALK, commit b903e06): `evaluate_memory.py` (items,
opening line, assembly, output means), `eval_memory/qa_tool.py` (context, QA prompt, lexical score, GPT
score) and `utils/utils_llm.py` (requests). Facts and exact strings as in `shared/PAPER_PROTOCOL.md` §1.

- Items: file order; categories 4 and 5 skipped; gold = `qa.get("answer", "")`.
- Context built from the file's own keys, as `get_input_context` does: every key containing "session"
  and not "date_time" gives a session number, duplicates kept, so REALTALK's `events_session_N` makes
  each session appear twice (LoCoMo files have no such keys: once); blocks newest first; `clean_text`
  if the key exists else `text`, unescaped; a caption line wherever a `blip_caption` key exists.
  `paper-once` is the same protocol with each session once (whether the paper's tables used the
  duplication is not known).
- Request: one user message and nothing else (no temperature, max_tokens, system message...), so the
  provider's defaults apply as they did for the paper (OpenAI: temperature 1). The reply is kept unstripped.
- Judge: the paper's GPT-score prompt in JSON mode, by default the answering model (the script's
  `--evaluate_model` has no effect); `--judge-model` overrides it and the report says which was used.

Deliberate differences, each because the script's behaviour cannot be reproduced or would lose work:
- Opening-line speaker order: the script takes `list(set(speakers of session_1))`, whose order changes
  with Python's hash seed between processes. We use the order of first appearance in session 1 (Emi
  before elise in Chat_1; the paper's run used either). A session 1 with one speaker (the script would
  crash) takes the second name from later sessions.
- Judge replies: the script re-asks up to 4 times on invalid JSON and crashes on a missing key or a
  non-numeric score after all calls; we re-ask the same way, and a reply still without a number in
  [0, 1] under "score" is no score for that item (counted, never 0).
- A key with "session" but no number after the last `_` (the script would crash) is ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from realtalk_cli.data.formats import read_json
from realtalk_cli.errors import RealtalkError
from realtalk_cli.tasks.probe.items import Item, chosen_questions
from realtalk_cli.tasks.probe.protocol import ProbeProtocol
from realtalk_cli.tasks.prompts import text_hash

OPENING = (
    "Below is a conversation between two people: {} and {}. The conversation takes place over multiple days "
    "and the date of each conversation is written at the beginning of the conversation.\n\n"
)
QA_PROMPT = (
    "Based on the above context, write an answer in the form of a short phrase for the following question.\n"
    'If the question is about a date, try to infer the approximate date (e.g., "In the 1800s", "Before Jan 2021", '
    "etc.).\n\nQuestion: {}\nAnswer:\n"
)
JUDGE_PROMPT = (
    "Given the question and its ground truth answer, evaluate the correctness of the model's prediction.\n\n"
    "Question: {question}\nGround truth: {answer}\nModel's prediction: {prediction}\n\n"
    "Assign a score between 0 and 1, where 0 indicates the model's prediction is completely incorrect, and 1 "
    "indicates the model's prediction is completely correct.\nOutput in following JSON format:\n"
    '{\n    "score": <score>,\n}\n'
)
SKIPPED_CATEGORIES = (4, 5)
JUDGE_ATTEMPTS = 4  # utils_llm.py: re-asked on invalid JSON, up to 4 attempts


def prompt_hashes() -> dict[str, str]:
    """The paper's strings as part of a run's identity (they live here, not in editable prompt files)."""
    return {
        "paper:opening": text_hash(OPENING),
        "paper:qa": text_hash(QA_PROMPT),
        "paper:judge": text_hash(JUDGE_PROMPT),
    }


def conversation(data: dict) -> dict:
    """What the script reads as the conversation: LoCoMo's `conversation`, else the whole REALTALK file."""
    conv = data.get("conversation")
    return conv if isinstance(conv, dict) else data


def session_numbers(conv: dict, duplicate: bool = True) -> list[int]:
    numbers = []
    for key in conv:
        if "session" in key and "date_time" not in key:
            tail = key.rsplit("_", 1)[-1]
            if tail.isdigit():
                numbers.append(int(tail))
    return sorted(numbers if duplicate else set(numbers))


def _message_text(m: dict) -> str:
    return m["clean_text"] if "clean_text" in m else m["text"]


def context(conv: dict, duplicate: bool = True) -> str:
    """`get_input_context`: session blocks newest first, each `DATE:`/`CONVERSATION:` then the messages."""
    blocks: list[str] = []
    for i in session_numbers(conv, duplicate):
        messages = conv.get(f"session_{i}")
        if messages is None:
            continue
        lines = [f"DATE: {conv[f'session_{i}_date_time']}\nCONVERSATION:\n"]
        for m in messages:
            entry = f'{m["speaker"]} said, "{_message_text(m)}"'
            if "blip_caption" in m:
                entry += f'\n{m["speaker"]} shared, an image of "{m["blip_caption"]}".'
            lines.append(entry + "\n")
        blocks.append("".join(lines) + "\n")
    return "".join(reversed(blocks))


def opening_speakers(conv: dict) -> tuple[str, str]:
    """The two names of the opening line, in a fixed order: first appearance in session 1 (then later ones)."""
    seen: list[str] = []
    numbers = sorted(set(session_numbers(conv, duplicate=False)))
    for i in ([1] if "session_1" in conv else []) + numbers:
        for m in conv.get(f"session_{i}", []):
            if m["speaker"] not in seen:
                seen.append(m["speaker"])
        if len(seen) >= 2:
            return seen[0], seen[1]
    raise RealtalkError("the chat has fewer than two speakers; the paper's opening line names two")


def opening(speakers: tuple[str, str]) -> str:
    first, rest = OPENING.split("{}", 1)
    second, third = rest.split("{}", 1)
    return first + speakers[0] + second + speakers[1] + third


def qa_prompt(question: str) -> str:
    before, after = QA_PROMPT.split("{}", 1)
    return before + question + after


def prompt(conv: dict, question: str, duplicate: bool = True, speakers: tuple[str, str] | None = None) -> str:
    """The whole prompt of one question: opening + context + "\\n\\n" + QA prompt (evaluate_memory.py L42-46)."""
    return opening(speakers or opening_speakers(conv)) + context(conv, duplicate) + "\n\n" + qa_prompt(question)


def judge_prompt(question: str, answer: str, prediction: str) -> str:
    """The GPT-score prompt, filled in one pass as str.format does (a brace in the text stays as it is)."""
    values = {"question": question, "answer": answer, "prediction": prediction}
    return re.sub(r"\{(question|answer|prediction)\}", lambda m: values[m.group(1)], JUDGE_PROMPT)


def parse_judge(text: str) -> float | None:
    """`json.loads(reply)["score"]`, checked: a number in [0, 1], else None (the script would crash)."""
    try:
        value = json.loads(text).get("score")
    except (json.JSONDecodeError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None
    return float(value)


def load_file(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        raise RealtalkError(f"{path}: expected a JSON object")
    return data


def file_items(path: Path, data: dict) -> list[tuple[int, dict]]:
    """(index in `qa`, item) for every question the script asks: file order, categories 4 and 5 skipped."""
    qa = data.get("qa")
    if not isinstance(qa, list):
        raise RealtalkError(f"{path}: no `qa` list")
    return [(i, q) for i, q in enumerate(qa) if isinstance(q, dict) and q.get("category") not in SKIPPED_CATEGORIES]


def file_prompts(path: Path, duplicate: bool = True) -> list[tuple[int, dict, str]]:
    """(qa index, item, prompt) for every question of one file, the context built once."""
    data = load_file(path)
    conv = conversation(data)
    try:
        head = opening(opening_speakers(conv)) + context(conv, duplicate) + "\n\n"
    except KeyError as e:
        raise RealtalkError(f"{path}: missing key {e} that the paper's script reads") from None
    return [(i, q, head + qa_prompt(str(q.get("question", "")))) for i, q in file_items(path, data)]


def build_items(files: list[Path], duplicate: bool, opts) -> list[Item]:
    """Every question the paper's script asks of the given files (of those the run chose), with its exact prompt
    as one user message."""
    items: list[Item] = []
    asks = lambda chat, qa: qa.category not in SKIPPED_CATEGORIES  # noqa: E731
    for path, chat, questions in chosen_questions(files, opts, asks):
        prompts = {i: text for i, _, text in file_prompts(path, duplicate)}
        items += [Item.with_prompt(chat, path, i, qa, prompts[i]) for i, qa in questions if i in prompts]
    return items


def describe(compat: str, duplicate: bool, judge: str | None, answering: str, judge_given: bool) -> dict:
    """What the report says about the protocol a run followed."""
    if judge is None:
        judged = "none (an offline model cannot grade; the paper's script grades with the answering model)"
    elif judge_given:
        judged = f"{judge} (--judge-model; the paper's script grades with the answering model, {answering})"
    else:
        judged = f"{judge}: the answering model, as the paper's script"
    return {
        "compat": compat,
        "source": "danny911kr/REALTALK b903e06: evaluate_memory.py, eval_memory/qa_tool.py, utils/utils_llm.py",
        "sessions": "each twice where events_session_N exists, newest first"
        if duplicate
        else "each once, newest first",
        "speaker_order": "first appearance in session 1 (the script's set order varies between processes)",
        "request_parameters": "none: one user message, provider defaults (no temperature, max_tokens, seed)",
        "skipped_categories": list(SKIPPED_CATEGORIES),
        "judge": judged,
    }


class PaperProtocol(ProbeProtocol):
    """`--compat paper` (alias `official`, the name earlier versions used)."""

    name = "paper"
    answer_params = {"temperature": None, "max_tokens": None}  # the paper's requests carry no sampling parameters
    judge = "paper"
    judge_with_answering_model = True  # the script's --evaluate_model has no effect
    keep_raw_reply = True
    takes_context = False
    batch = False
    duplicate = True  # sessions twice where events_session_N exists, as get_input_context reads the keys

    def prompt_hashes(self) -> dict[str, str]:
        return {k: v for k, v in prompt_hashes().items() if k != "paper:judge"}

    def build_items(self, files, opts, model, memories) -> list[Item]:
        return build_items(files, self.duplicate, opts)

    def describe(self, judge: str | None, answering: str, judge_given: bool) -> dict:
        return describe(self.name, self.duplicate, judge, answering, judge_given)


class PaperOnceProtocol(PaperProtocol):
    """`--compat paper-once`: the paper's protocol with each session once."""

    name = "paper-once"
    duplicate = False
