"""LongMemEval files (xiaowu0162/LongMemEval): a JSON list of instances, each its own haystack of dated sessions
and one question; read one instance at a time and mapped to the one `Chat` model.

Facts from `shared/LITERATURE_PROTOCOLS.md` §2.1. An instance holds `question_id` (`_abs` in it: an abstention
question), `question_type` (six types), `question`, `answer` (a string, or a JSON integer in 32 oracle
instances), `question_date` (`2023/05/20 (Sat) 02:21`), parallel lists `haystack_session_ids`, `haystack_dates`
and `haystack_sessions` (each session a list of turns `{"role": "user"|"assistant", "content": str}`, evidence
turns marked `"has_answer": true`), and `answer_session_ids`.

Streaming: the M file is ~2.7 GB, so nothing here reads a whole file. `iter_instances` walks the top-level array
with the standard library's JSON decoder one instance at a time (`raw_decode` over a window of the file that
grows only while one instance does not fit in it), and gives each instance's byte span (`InstanceRef`), from
which the instance is read again when its prompt is built (`InstanceRef.read`).

The mapping: one `Chat` per instance, named by `question_id`, speakers `user` and `assistant`; session N is the
N-th haystack session in file order (ids `D<N>:<turn>`, dated by `haystack_dates`); one `QAItem` whose category is
the question type (numbered as `model.CATEGORY_NAMES` says), whose evidence is the `has_answer` turns, and whose
`answer_sessions` are the positions of `answer_session_ids`. LongMemEval's retrieval metrics skip abstention
questions: theirs have no evidence here (9 of the 30 real ones mark a `has_answer` turn nonetheless).

Shape errors (a missing or mistyped field, a truncated or malformed file) raise `RealtalkError` naming the file,
the instance (index and question_id) and the field. The quirks of the real files (sessions out of date order in
oracle, a question date before the last session, integer answers) are not errors: `quirks` lists them for
`validate`.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from realtalk_cli.data.model import CATEGORY_NAMES, Chat, Message, QAItem, Session, parse_date
from realtalk_cli.errors import RealtalkError

QUESTION_TYPES: dict[str, int] = {name: number for number, name in CATEGORY_NAMES["longmemeval"].items()}
ROLES = ("user", "assistant")
SPEAKERS = ("user", "assistant")  # speaker_1, speaker_2 of every instance's chat
CHUNK = 1 << 20  # bytes read at a time; the window grows beyond it only while one instance does not fit
_NEAR_END = 16  # a decoding error this close to the end of the window may be an instance cut by the window


@dataclass(frozen=True)
class InstanceRef:
    """Where one instance lies in its file: read again from there when its prompt is built."""

    path: Path
    index: int
    question_id: str
    offset: int  # of its first byte
    length: int  # in bytes

    @property
    def where(self) -> str:
        return f"{self.path}: instance {self.index} (question_id {self.question_id})"

    def read(self) -> dict:
        """The instance as parsed from the file again; the file must not have changed since it was listed."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                raw = f.read(self.length)
            obj = json.loads(raw)
        except (OSError, ValueError, RecursionError) as e:
            raise RealtalkError(
                f"{self.where}: cannot be read again ({e}); did the file change during the run?"
            ) from None
        if not isinstance(obj, dict) or obj.get("question_id") != self.question_id:
            raise RealtalkError(f"{self.where}: the file changed during the run (another instance is there now)")
        return obj

    def chat(self) -> Chat:
        """The instance as a `Chat` (read again from the file)."""
        return instance_chat(self.read(), self)


class _Window:
    """A window of decoded text over a binary file, with the byte offset and line of its first character."""

    def __init__(self, f, path: Path):
        self.f = f
        self.path = path
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0  # the next character to read in `text`
        self.byte = 0  # byte offset of text[0]
        self.line = 1  # line number of text[0]
        self.column = 1  # its column
        self.read_bytes = 0  # bytes read from the file so far
        self.eof = False

    def more(self, size: int = CHUNK) -> bool:
        """Read on; False at the end of the file."""
        if self.eof:
            return False
        data = self.f.read(size)
        try:
            self.text += self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            if not data:
                raise RealtalkError(f"{self.path}: the file ends inside a character (truncated?)") from None
            raise RealtalkError(f"{self.path}: not UTF-8 text near byte {self.read_bytes + e.start}") from None
        self.read_bytes += len(data)
        self.eof = not data
        return bool(data)

    def drop_read(self) -> None:
        """Forget the text before `pos` (keeping its byte count and lines)."""
        done = self.text[: self.pos]
        self.byte += len(done.encode("utf-8"))
        self.line += done.count("\n")
        newline = done.rfind("\n")
        self.column = len(done) - newline if newline >= 0 else self.column + len(done)
        self.text = self.text[self.pos :]
        self.pos = 0

    def bytes_between(self, start: int, end: int) -> int:
        return len(self.text[start:end].encode("utf-8"))

    def place(self, pos: int) -> str:
        line = self.line + self.text.count("\n", 0, pos)
        newline = self.text.rfind("\n", 0, pos)
        column = pos - newline if newline >= 0 else self.column + pos
        return f"line {line}, column {column}"

    def next_char(self) -> str:
        """The next character that is not JSON whitespace ('' at the end of the file), `pos` moved onto it."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n\ufeff":
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            self.drop_read()
            if not self.more():
                return ""


def iter_instances(path: Path) -> Iterator[tuple[InstanceRef, dict]]:
    """Every instance of a LongMemEval file, in order, with where it lies; one instance in memory at a time.

    A file that is no JSON list, malformed JSON, an element that is no object, or a file that ends inside the
    list (a truncated download) is a RealtalkError naming the file and the place."""
    decoder = json.JSONDecoder()
    try:
        f = open(path, "rb")  # closed by the `with` below, also when the caller stops early
    except OSError as e:
        raise RealtalkError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        w = _Window(f, path)
        if w.next_char() != "[":
            raise RealtalkError(f"{path}: not a LongMemEval file (expected a JSON list of instances)")
        w.pos += 1
        index = 0
        after = "the opening ["
        while True:
            ch = w.next_char()
            if ch == "":
                raise RealtalkError(f"{path}: the file ends inside the list, after {after} (truncated?)")
            if ch == "]":
                w.pos += 1
                if w.next_char() != "":
                    raise RealtalkError(f"{path}: {w.place(w.pos)}: data after the end of the list")
                return
            if index:
                if ch != ",":
                    raise RealtalkError(f"{path}: {w.place(w.pos)}: malformed JSON (expected ',' or ']' after {after})")
                w.pos += 1
                if w.next_char() in ("", "]"):
                    raise RealtalkError(f"{path}: the file ends inside the list, after {after} (truncated?)")
            w.drop_read()
            obj, end = _decode(w, decoder, index)
            if not isinstance(obj, dict):
                raise RealtalkError(f"{path}: instance {index}: expected an object, found {type(obj).__name__}")
            if index == 0 and "question_id" not in obj and "haystack_sessions" not in obj:
                raise RealtalkError(
                    f"{path}: a JSON list, but not of LongMemEval instances (the first has no question_id nor "
                    "haystack_sessions); a REALTALK or LoCoMo file holds one chat object"
                )
            qid = obj.get("question_id")
            if not isinstance(qid, str):
                found = "missing" if qid is None else f"a {type(qid).__name__}"
                raise RealtalkError(f"{path}: instance {index}: field 'question_id': expected a string, {found}")
            ref = InstanceRef(path, index, qid, w.byte, w.bytes_between(0, end))
            w.pos = end
            yield ref, obj
            after = f"instance {index} (question_id {qid})"
            index += 1


def _decode(w: _Window, decoder: json.JSONDecoder, index: int) -> tuple[object, int]:
    """The JSON value at the window's start, reading on while it is cut by the end of the window."""
    while True:
        try:
            obj, end = decoder.raw_decode(w.text, w.pos)
            if end < len(w.text) or w.eof or isinstance(obj, (dict, list, str)):
                return obj, end
        except json.JSONDecodeError as e:
            unterminated = e.msg.startswith("Unterminated string")
            if w.eof:  # all is read: cut if nothing but the beginning of a value follows the error
                if unterminated or not any(c in w.text[e.pos :] for c in ",:]}"):
                    raise RealtalkError(f"{w.path}: the file ends inside instance {index} (truncated?)") from None
                raise RealtalkError(f"{w.path}: instance {index}, {w.place(e.pos)}: malformed JSON ({e.msg})") from None
            if not unterminated and e.pos < len(w.text) - _NEAR_END:  # not where the window cuts it
                raise RealtalkError(f"{w.path}: instance {index}, {w.place(e.pos)}: malformed JSON ({e.msg})") from None
        except RecursionError:
            raise RealtalkError(f"{w.path}: instance {index}: JSON nested too deep") from None
        w.more(max(CHUNK, len(w.text)))  # doubles the window: an instance of n bytes is decoded O(log n) times


def is_longmemeval_file(path: Path) -> bool:
    """Whether a file holds a JSON list of objects (the LongMemEval layout; a REALTALK or LoCoMo file is one
    object). Reads only its first bytes; `iter_instances` checks that the objects are LongMemEval instances."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    space = b" \t\r\n"
    head = head.lstrip(space).removeprefix(b"\xef\xbb\xbf").lstrip(space)
    return head.startswith(b"[") and head[1:].lstrip(space).startswith(b"{")


# --- one instance ----------------------------------------------------------------------------------------------


class _Fields:
    """Type checks naming the file, the instance and the field."""

    def __init__(self, obj: dict, where: str):
        self.obj = obj
        self.where = where

    def fail(self, field: str, problem: str) -> RealtalkError:
        return RealtalkError(f"{self.where}: field '{field}': {problem}")

    def get(self, key: str, kinds: tuple[type, ...], what: str):
        if key not in self.obj:
            raise self.fail(key, "missing")
        value = self.obj[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise self.fail(key, f"expected {what}, found {_kind(value)}")
        return value

    def strings(self, key: str) -> list[str]:
        values = self.get(key, (list,), "a list of strings")
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.fail(f"{key}[{i}]", f"expected a string, found {_kind(v)}")
        return values


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return names.get(type(value), type(value).__name__)


def instance_chat(obj: dict, ref: InstanceRef) -> Chat:
    """One instance as a Chat with its one question (see the module's docstring for the mapping)."""
    f = _Fields(obj, ref.where)
    question_id = f.get("question_id", (str,), "a string")
    question_type = f.get("question_type", (str,), "a string")
    if question_type not in QUESTION_TYPES:
        raise f.fail("question_type", f"{question_type!r} is none of LongMemEval's types ({', '.join(QUESTION_TYPES)})")
    question = f.get("question", (str,), "a string")
    answer = f.get("answer", (str, int), "a string or an integer")
    question_date = f.get("question_date", (str,), "a string")
    ids = f.strings("haystack_session_ids")
    dates = f.strings("haystack_dates")
    sessions_raw = f.get("haystack_sessions", (list,), "a list of sessions")
    answer_ids = f.strings("answer_session_ids")
    if not len(ids) == len(dates) == len(sessions_raw):
        raise f.fail(
            "haystack_sessions",
            f"{len(sessions_raw)} sessions but {len(ids)} haystack_session_ids and {len(dates)} haystack_dates",
        )
    abstention = "_abs" in question_id
    sessions, evidence = [], []
    for n, (date, turns) in enumerate(zip(dates, sessions_raw, strict=True), start=1):
        where = f"haystack_sessions[{n - 1}]"
        if not isinstance(turns, list):
            raise f.fail(where, f"expected a list of turns, found {_kind(turns)}")
        messages = []
        for j, turn in enumerate(turns, start=1):
            here = f"{where}[{j - 1}]"
            if not isinstance(turn, dict):
                raise f.fail(here, f"expected a turn object, found {_kind(turn)}")
            role, content = turn.get("role"), turn.get("content")
            if role not in ROLES:
                problem = "missing" if "role" not in turn else f"{role!r} is neither 'user' nor 'assistant'"
                raise f.fail(f"{here}.role", problem)
            if not isinstance(content, str):
                problem = "missing" if "content" not in turn else f"expected a string, found {_kind(content)}"
                raise f.fail(f"{here}.content", problem)
            if not isinstance(turn.get("has_answer", False), bool):
                raise f.fail(f"{here}.has_answer", f"expected true or false, found {_kind(turn['has_answer'])}")
            dia_id = f"D{n}:{j}"
            messages.append(Message(dia_id=dia_id, speaker=role, clean_text=content, session=n))
            if turn.get("has_answer") is True and not abstention:
                evidence.append(dia_id)
        sessions.append(Session(number=n, date_time=date, messages=messages))
    wanted = set(answer_ids)
    qa = QAItem(
        question=question,
        answer=str(answer),
        evidence=evidence,
        category=QUESTION_TYPES[question_type],
        dataset="longmemeval",
        question_id=question_id,
        question_date=question_date,
        answer_sessions=[] if abstention else [n for n, sid in enumerate(ids, start=1) if sid in wanted],
    )
    return Chat(question_id, "longmemeval", *SPEAKERS, sessions, [qa])


def skeleton(chat: Chat) -> Chat:
    """The chat with only its questions' evidence messages (and their sessions): what a probe item keeps once its
    prompt can be built again from the file, so that a run does not hold every haystack."""
    keep = {e for q in chat.qa for e in q.evidence}
    sessions = [replace(s, messages=[m for m in s.messages if m.dia_id in keep]) for s in chat.sessions]
    return replace(chat, sessions=[s for s in sessions if s.messages])


def quirks(obj: dict, chat: Chat) -> list[tuple[str, str, str]]:
    """(level, field, message) for what `validate` should say about a well-formed instance: the real files' quirks
    (warnings) and what would make a run wrong (errors)."""
    found: list[tuple[str, str, str]] = []
    qa = chat.qa[0]
    if isinstance(obj.get("answer"), int):
        found.append(("warning", "answer", f"an integer ({obj['answer']}), read as the text {qa.answer!r}"))
    times = [s.time for s in chat.sessions]
    for s, t in zip(chat.sessions, times, strict=True):
        if t is None:
            found.append(("error", f"haystack_dates[{s.number - 1}]", f"date {s.date_time!r} does not parse"))
    asked = parse_date(qa.question_date or "")
    if asked is None:
        found.append(("error", "question_date", f"date {qa.question_date!r} does not parse"))
    known = [t for t in times if t is not None]
    if any(b < a for a, b in zip(known, known[1:], strict=False)):
        found.append(("warning", "haystack_dates", "sessions are not in date order (LongMemEval sorts them by date)"))
    if asked is not None and known and asked < max(known):
        latest = f"{max(known):%Y/%m/%d %H:%M}"
        found.append(("warning", "question_date", f"{qa.question_date} is before the latest session ({latest})"))
    ids = obj["haystack_session_ids"]
    missing = [sid for sid in obj["answer_session_ids"] if sid not in ids]
    if missing:
        found.append(("warning", "answer_session_ids", f"{', '.join(missing[:3])} not in haystack_session_ids"))
    if not qa.abstention and not qa.evidence:
        no_evidence = "no turn has has_answer: true (turn-level evidence recall is unavailable)"
        found.append(("warning", "haystack_sessions", no_evidence))
    if not qa.question.strip():
        found.append(("error", "question", "empty"))
    for s in chat.sessions:
        if not s.messages:
            found.append(("warning", f"haystack_sessions[{s.number - 1}]", "session has no turns"))
    return found
