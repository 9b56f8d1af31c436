"""Offline baselines: answerers that need no network or key, registered as `offline:NAME` models.

They read only the prompt a real model would see (any of our layouts or the paper's: `DATE:` blocks or
dated retrieval lines, `X said, "..."` messages, a `Question:` line), so they run through the same
client, cache and reports as any endpoint and give a floor to compare models against.

- `offline:bm25`: a short answer extracted from the best-matching message. Messages are ranked by BM25
  over Porter-stemmed words; the answer is that message's words minus the question's (at most
  `ANSWER_WORDS`), a comma list from the best few messages for list questions ("What are ...",
  "Which ...", plurals), and the message's session date written out (`29 December 2023`) for "when"
  questions and questions carrying our date hint.
- `offline:bm25-line`: the previous baseline, kept for comparison: the whole best-matching line of the
  prompt (it answered with the prompt's header line on 308 of 500 REALTALK questions).
- `offline:not-mentioned`: always "Not mentioned in the conversation", the floor of LoCoMo's category 5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from realtalk_cli.data.model import parse_date
from realtalk_cli.llm.providers import register_local_model
from realtalk_cli.scoring.f1 import stem
from realtalk_cli.tasks.memory.retrieval import BM25
from realtalk_cli.tasks.probe.items import NOT_MENTIONED

ANSWER_WORDS = 6
LIST_PARTS = 3

_STOP = frozenset(
    """a an the and or but of to in on at for from with by about as into over after before is are was were be been
    being am do does did done have has had having i me my mine you your yours he him his she her hers it its we us our
    they them their this that these those there here what which who whom whose when where why how not no yes so if
    then than too very just also can could will would shall should may might must up down out off again more most
    some any all both each few other such only own same s t don now oh ok okay yeah haha lol really like get got go
    going went gonna wanna im its thats dont didnt cant one""".split()
)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")
_DATE_LINE = re.compile(r"^DATE: (.*)$")
_DATED_MESSAGE = re.compile(r"^(.*?): (.+? said, \".*)$")  # a retrieval line: "<date>: X said, ..."
_MESSAGE = re.compile(r'^(?P<speaker>.+?) said, "(?P<text>.*)"$', re.S)
_QUESTION = re.compile(
    r"Question: (?P<q>.*?)(?: Use the DATE of each CONVERSATION.*?)?(?: Short answer:|\nAnswer:|$)", re.S
)
_LIST_QUESTION = re.compile(
    r"^(what|which) (are|were|kinds?|types?|things|activities|hobbies|places)\b|\bwhat \w+s\b", re.I
)
_YES_NO_QUESTION = re.compile(r"^(do|does|did|is|are|was|were|can|could|has|have|had|will|would|should)\b", re.I)
_WHEN_QUESTION = re.compile(r"^\s*when\b|\bwhat (date|day|month|year|time)\b|\bhow long ago\b", re.I)


@dataclass
class PromptMessage:
    speaker: str
    text: str
    date: str


def _stem_words(text: str) -> list[str]:
    return [stem(w.lower()) for w in _WORD.findall(text) if w.lower() not in _STOP]


@dataclass
class PromptChat:
    messages: list[PromptMessage]
    index: BM25  # over the messages' stemmed words


def parse_prompt(content: str) -> tuple[PromptChat, str, bool]:
    """(the chat in the prompt, the question, whether the question carries our date hint)."""
    questions = list(_QUESTION.finditer(content))
    question = questions[-1]["q"].strip() if questions else ""
    chat = parse_context(content[: questions[-1].start()] if questions else content)
    return chat, question, "written with the month in words" in content


@lru_cache(maxsize=4)  # every question of a chat shares its context: parse and index it once
def parse_context(content: str) -> PromptChat:
    messages: list[PromptMessage] = []
    date = ""
    lines = content.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if match := _DATE_LINE.match(line):
            date = match.group(1)
        elif ' said, "' in line:
            line_date = date
            if (dated := _DATED_MESSAGE.match(line)) and ' said, "' not in dated.group(1):
                line_date, line = dated.group(1), dated.group(2)
            block = line
            while not block.endswith('"') and i + 1 < len(lines) and ' said, "' not in lines[i + 1]:
                i += 1  # a message with newlines in it
                block += "\n" + lines[i]
            if m := _MESSAGE.match(block):
                messages.append(PromptMessage(m["speaker"], m["text"], line_date))
        i += 1
    return PromptChat(messages, BM25([" ".join(_stem_words(m.text)) for m in messages]))


def written_date(text: str) -> str:
    parsed = parse_date(text)
    return f"{parsed.day} {parsed:%B %Y}" if parsed else text


def _short(text: str, question_words: set[str], limit: int) -> str:
    kept = [w for w in _WORD.findall(text) if w.lower() not in _STOP and stem(w.lower()) not in question_words]
    return " ".join(kept[:limit])


def extract_answer(messages: list[dict]) -> str:
    """`offline:bm25`: a short answer from the message that best matches the question."""
    content = "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    parsed, question, date_hint = parse_prompt(content)
    chat = parsed.messages
    question = question.split("Select the correct answer:")[0]
    if not chat or not question:
        return ""
    query = _stem_words(question)
    best = parsed.index.top(" ".join(query), LIST_PARTS)
    top = chat[best[0]]
    if date_hint or _WHEN_QUESTION.search(question):
        return written_date(top.date)
    if _YES_NO_QUESTION.match(question):
        return "Yes"
    asked = set(query)
    if _LIST_QUESTION.search(question):
        parts = [_short(chat[i].text, asked, 2) for i in best]
        return ", ".join(p for p in parts if p)
    return _short(top.text, asked, ANSWER_WORDS)


def bm25_line(messages: list[dict]) -> str:
    """`offline:bm25-line`: the line of the prompt that best matches its last question line."""
    lines = [ln for m in messages for ln in m["content"].splitlines() if ln.strip()]
    question_lines = [i for i, ln in enumerate(lines) if "?" in ln]
    if not question_lines:
        return ""
    q = question_lines[-1]
    candidates = [ln for i, ln in enumerate(lines) if i != q and ":" in ln]
    if not candidates:
        return ""
    best = candidates[BM25(candidates).top(lines[q], 1)[0]]
    # Answer with the message itself, without the speaker (and date) before it.
    quoted = re.search(r'said, "(.*)"', best)
    return quoted.group(1) if quoted else best.split(": ", 1)[-1].strip()


register_local_model("bm25", extract_answer)
register_local_model("bm25-line", bm25_line)
register_local_model("not-mentioned", lambda messages: NOT_MENTIONED)
