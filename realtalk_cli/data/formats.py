"""Readers for the REALTALK, LoCoMo and LongMemEval JSON layouts, and the REALTALK writer.

`load_chat` detects the layout of a one-chat file; `iter_chats` reads any file, also a LongMemEval list of
instances (one chat each, read one at a time by `longmemeval.py`). Shape errors raise `RealtalkError` naming
the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from realtalk_cli.data.longmemeval import instance_chat as longmemeval_chat
from realtalk_cli.data.longmemeval import is_longmemeval_file, iter_instances
from realtalk_cli.data.model import Chat, Dataset, Event, Message, QAItem, Session
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import write_atomic

_SESSION_KEY = re.compile(r"^session_(\d+)$")
_SPEAKER_KEY = re.compile(r"^speaker_(\d+)$")


class _Shape:
    """Type checks that name the file and key path when the data is not what the layout says."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> RealtalkError:
        return RealtalkError(f"{self.source}: {where}: {problem}")

    def get(self, obj: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if key not in obj:
            raise self.fail(where, f"missing key '{key}'")
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.fail(f"{where}.{key}" if where else key, f"expected {_kind(kind)}, found {type(value).__name__}")
        return value

    def opt(self, obj: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any) -> Any:
        if key not in obj or obj[key] is None:
            return default
        return self.get(obj, key, kind, where)

    def strings(self, obj: dict, key: str, where: str) -> list[str]:
        """An optional list of strings (file names, URLs): `[1, null]` is an error, not a list of names."""
        values = self.opt(obj, key, list, where, [])
        if not all(isinstance(v, str) for v in values):
            raise self.fail(f"{where}.{key}", f"expected a list of strings, found {values!r}"[:200])
        return values


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def read_json(path: Path) -> Any:
    """Parse a JSON file; missing, unreadable or malformed files become a RealtalkError."""
    if not path.exists():
        raise RealtalkError(f"{path}: no such file")
    if path.is_dir():
        raise RealtalkError(f"{path}: is a directory, expected a JSON file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RealtalkError(f"{path}: cannot read: {e.strerror}") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM (Messenger archives have one) is no JSON
    if raw[:4] == b"PK\x03\x04":
        raise RealtalkError(
            f"{path}: is a raw sheet or zip archive, not a chat JSON; convert it first: "
            f"realtalk convert {path} -o {path.with_suffix('.json').name}"
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        # orjson reports the character offset; users want line and column.
        pos = e.pos if isinstance(e.pos, int) else 0
        text = raw[:pos].decode("utf-8", "replace")
        line = text.count("\n") + 1
        col = pos - (text.rfind("\n") + 1) + 1
        raise RealtalkError(f"{path}: line {line}, column {col}: malformed JSON ({e.msg})") from None


def detect_layout(obj: Any) -> Dataset | None:
    if isinstance(obj, dict) and "conversation" in obj:
        return "locomo"
    if isinstance(obj, dict) and "name" in obj and any(_SESSION_KEY.match(k) for k in obj):
        return "realtalk"
    return None


def file_layout(path: Path) -> Dataset | None:
    """A file's layout from its first bytes alone when it is LongMemEval's (a JSON list), else None: only then
    may it be read whole."""
    return "longmemeval" if is_longmemeval_file(path) else None


def load_chat(path: Path | str) -> Chat:
    path = Path(path)
    if path.is_file() and file_layout(path) == "longmemeval":
        raise RealtalkError(
            f"{path}: a LongMemEval file (one haystack per question): this reads REALTALK and LoCoMo chats only "
            "(validate, analyze stats, probe with realtalk's protocol or --compat longmemeval, probe show and "
            "report read LongMemEval files)"
        )
    obj = read_json(path)
    return chat_from_obj(obj, path)


def iter_chats(path: Path) -> Iterator[tuple[Chat, Callable[[], Chat] | None]]:
    """Every chat a file holds, with a way to read it again: a REALTALK or LoCoMo file is one chat (None: keep it);
    a LongMemEval file one chat per instance, read one at a time, each of which can be read again from the file
    (so that a long run need not keep every haystack)."""
    if path.is_file() and file_layout(path) == "longmemeval":
        for ref, obj in iter_instances(path):
            yield longmemeval_chat(obj, ref), ref.chat
        return
    yield load_chat(path), None


def chat_from_obj(obj: Any, path: Path) -> Chat:
    layout = detect_layout(obj)
    if layout == "realtalk":
        return _read_realtalk(obj, path)
    if layout == "locomo":
        return _read_locomo(obj, path)
    raise RealtalkError(
        f"{path}: not a REALTALK or LoCoMo chat (expected keys 'name' and 'session_1', or 'conversation')"
        + (" nor a LongMemEval list of instances" if isinstance(obj, list) else "")
    )


def check_chats(paths: list[Path]) -> None:
    """Read every chat of the files once (one at a time) so that a bad one is found before slow work starts."""
    for path in chat_paths(paths):
        for _ in iter_chats(path):
            pass


# The JSON files realtalk writes into run and report folders: never chats, even in a folder of chats.
RUN_FILES = frozenset({"run.json", "report.json", "batch.json", "metrics.json"})


def chat_paths(paths: list[Path]) -> list[Path]:
    """Expand directories into the chat JSON files they hold, sorted by chat number (a run's own files left out)."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            files = sorted((f for f in p.glob("*.json") if f.name not in RUN_FILES), key=_natural_key)
            if not files:
                raise RealtalkError(f"{p}: no .json files in this directory")
            found.extend(files)
        else:
            found.append(p)
    return found


@dataclass(frozen=True)
class ChatFile:
    """One chat of a run: its file, its content's sha256 and its id, unique within the run (rows, per-chat tables,
    memory stores and `probe show --chat` use it): the file name without .json; where two files of different
    content share that name, their folder is added (`a/Chat_1`), or a short hash where the folders share a name
    too (`Chat_1#1a2b3c4d`)."""

    path: Path
    id: str
    sha256: str

    @property
    def key(self) -> str:
        """How a run's identity names it: the file name (as every earlier run did), the id where names collide."""
        return self.path.name if self.id == self.path.stem else self.id + self.path.suffix

    def load(self) -> Chat:
        chat = load_chat(self.path)
        chat.name = self.id
        return chat

    def chats(self) -> Iterator[tuple[Chat, Callable[[], Chat] | None]]:
        """`load` for any file: a LongMemEval file gives one chat per instance (named by its question_id), read one
        at a time, each with a way to read it again; a one-chat file gives its chat and None (keep it)."""
        if self.path.is_file() and file_layout(self.path) == "longmemeval":
            yield from iter_chats(self.path)
        else:
            yield self.load(), None


def chat_files(paths: list[Path]) -> tuple[list[ChatFile], list[str]]:
    """The chats of a run (directories expanded), each file read once here, and notes for the reader: a file
    whose content was given before is the same chat and is left out (asked once). A pipe or a device is refused:
    a run reads its chats again (to resume it, to show its evidence), and a pipe can be read only once."""
    found: list[tuple[Path, str]] = []
    notes: list[str] = []
    seen: dict[str, Path] = {}
    for p in chat_paths(paths):
        if p.exists() and not p.is_file():
            raise RealtalkError(f"{p}: not a regular file; save the chat to a file (a run reads its chats again)")
        if not p.exists():
            raise RealtalkError(f"{p}: no such file")
        digest = file_sha256(p)
        if digest in seen:
            if Path(os.path.abspath(p)) != Path(os.path.abspath(seen[digest])):
                notes.append(f"{p} holds the same chat as {seen[digest]}: asked once, as {seen[digest]}")
            continue
        seen[digest] = p
        found.append((p, digest))
    return [ChatFile(p, i, d) for (p, d), i in zip(found, chat_ids(found), strict=True)], notes


def file_sha256(path: Path) -> str:
    """A file's sha256, read in blocks (a LongMemEval-M file is ~2.7 GB); remembered while the file is unchanged."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def chat_ids(files: list[tuple[Path, str]]) -> list[str]:
    """Ids for (path, sha256) pairs of different content, unique among them (see ChatFile)."""
    stems = Counter(p.stem for p, _ in files)
    folders = Counter((p.stem, p.parent.name) for p, _ in files)  # the folder as named: the same from any directory
    ids = []
    for p, digest in files:
        folder = p.parent.name
        if stems[p.stem] == 1:
            ids.append(p.stem)
        elif folder and folders[(p.stem, folder)] == 1:
            ids.append(f"{folder}/{p.stem}")
        else:
            ids.append(f"{p.stem}#{digest[:8]}")
    return ids


def chat_file_stem(chat_id: str) -> str:
    """The file name (without .json) a chat id was made from."""
    return chat_id.rsplit("/", 1)[-1].split("#", 1)[0]


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


# --- REALTALK ----------------------------------------------------------------------------------


def _read_realtalk(obj: dict, path: Path) -> Chat:
    s = _Shape(str(path))
    names = s.get(obj, "name", dict, "")
    speaker_1 = s.get(names, "speaker_1", str, "name")
    speaker_2 = s.get(names, "speaker_2", str, "name")
    extra = sorted(int(m.group(1)) for k in names if (m := _SPEAKER_KEY.match(k)) and int(m.group(1)) > 2)
    if extra and extra != list(range(3, extra[-1] + 1)):
        raise s.fail("name", f"speaker keys are not speaker_1..speaker_{extra[-1]} without gaps")
    extra_speakers = [s.get(names, f"speaker_{n}", str, "name") for n in extra]
    numbers = sorted(int(m.group(1)) for k in obj if (m := _SESSION_KEY.match(k)))
    sessions = []
    for n in numbers:
        key = f"session_{n}"
        rows = s.get(obj, key, list, "")
        messages = [_realtalk_message(s, row, f"{key}[{i}]", n) for i, row in enumerate(rows)]
        date_time = s.opt(obj, f"{key}_date_time", str, "", "")
        events_obj = s.opt(obj, f"events_{key}", dict, "", {})
        events = {
            agent: [
                _realtalk_event(s, e, f"events_{key}.{agent}[{i}]")
                for i, e in enumerate(s.opt(events_obj, agent, list, f"events_{key}", []))
            ]
            for agent in ("agent_a", "agent_b")
        }
        sessions.append(Session(number=n, date_time=date_time, messages=messages, events=events))
    qa = [_realtalk_qa(s, q, f"qa[{i}]") for i, q in enumerate(s.opt(obj, "qa", list, "", []))]
    return Chat(path.stem, "realtalk", speaker_1, speaker_2, sessions, qa, extra_speakers=extra_speakers)


def _realtalk_message(s: _Shape, row: Any, where: str, session: int) -> Message:
    if not isinstance(row, dict):
        raise s.fail(where, f"expected an object, found {type(row).__name__}")
    return Message(
        dia_id=s.get(row, "dia_id", str, where),
        speaker=s.get(row, "speaker", str, where),
        clean_text=s.get(row, "clean_text", str, where),
        date_time=s.opt(row, "date_time", str, where, ""),
        img_file=s.strings(row, "img_file", where),
        img_url=s.strings(row, "img_url", where),
        blip_caption=s.opt(row, "blip_caption", str, where, None),
        session=session,
    )


def _realtalk_event(s: _Shape, e: Any, where: str) -> Event:
    if not isinstance(e, dict):
        raise s.fail(where, f"expected an object, found {type(e).__name__}")
    return Event(
        sub_event=s.get(e, "sub-event", str, where),
        id=s.opt(e, "id", str, where, ""),
        date=s.opt(e, "date", str, where, ""),
        caused_by=s.opt(e, "caused_by", list, where, []),
    )


def _realtalk_qa(s: _Shape, q: Any, where: str) -> QAItem:
    if not isinstance(q, dict):
        raise s.fail(where, f"expected an object, found {type(q).__name__}")
    answer = s.get(q, "answer", (str, int, float), where)
    return QAItem(
        question=s.get(q, "question", str, where),
        answer=str(answer),
        evidence=[str(x) for x in s.opt(q, "evidence", list, where, [])],
        category=s.get(q, "category", int, where),
        dataset="realtalk",
    )


def realtalk_dict(chat: Chat, with_qa: bool = True) -> dict:
    """The published REALTALK layout, keys in the published order (a converted app export has no `qa` key:
    nobody wrote questions for it)."""
    out: dict[str, Any] = {"name": {f"speaker_{i}": name for i, name in enumerate(chat.speakers, start=1)}}
    for session in chat.sessions:
        out[f"session_{session.number}"] = [_message_dict(m) for m in session.messages]
        out[f"events_session_{session.number}"] = {
            agent: [{"sub-event": e.sub_event, "date": e.date, "id": e.id, "caused_by": e.caused_by} for e in events]
            for agent, events in session.events.items()
        }
    for session in chat.sessions:
        out[f"session_{session.number}_date_time"] = session.date_time
    if with_qa:
        out["qa"] = [
            {"question": q.question, "answer": q.answer, "evidence": q.evidence, "category": q.category}
            for q in chat.qa
        ]
    return out


def _message_dict(m: Message) -> dict:
    d: dict[str, Any] = {
        "clean_text": m.clean_text,
        "speaker": m.speaker,
        "date_time": m.date_time,
        "img_file": m.img_file,
        "img_url": m.img_url,
        "dia_id": m.dia_id,
    }
    if m.blip_caption is not None:
        d["blip_caption"] = m.blip_caption
    return d


def dumps_realtalk(chat: Chat, with_qa: bool = True) -> str:
    """Exactly the published byte layout: 4-space indent, UTF-8 kept, no trailing newline.

    orjson writes it with a 2-space indent, then every indent is doubled: the bytes of `json.dumps(obj,
    ensure_ascii=False, indent=4)` (strings escape the same characters; the layout holds no floats) in a tenth
    of its time, which a 200,000-line chat export needs. Text orjson refuses (a lone surrogate) goes through json.
    """
    obj = realtalk_dict(chat, with_qa)
    try:
        text = orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode("utf-8")
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, indent=4)
    return "\n".join([" " * (len(line) - len(line.lstrip(" "))) + line for line in text.split("\n")])


def write_realtalk(chat: Chat, path: Path, with_qa: bool = True) -> None:
    write_atomic(path, dumps_realtalk(chat, with_qa))


# --- LoCoMo ------------------------------------------------------------------------------------


def _read_locomo(obj: dict, path: Path) -> Chat:
    s = _Shape(str(path))
    conv = s.get(obj, "conversation", dict, "")
    speaker_a = s.get(conv, "speaker_a", str, "conversation")
    speaker_b = s.get(conv, "speaker_b", str, "conversation")
    observations = s.opt(obj, "observation", dict, "", {})
    summaries = s.opt(obj, "session_summary", dict, "", {})
    event_summary = s.opt(obj, "event_summary", dict, "", {})
    numbers = sorted(int(m.group(1)) for k in conv if (m := _SESSION_KEY.match(k)))
    sessions = []
    for n in numbers:
        key = f"session_{n}"
        where = f"conversation.{key}"
        rows = s.get(conv, key, list, "conversation")
        messages = [_locomo_message(s, row, f"{where}[{i}]", n) for i, row in enumerate(rows)]
        events_obj = s.opt(event_summary, f"events_{key}", dict, "event_summary", {})
        date = events_obj.get("date", "") if isinstance(events_obj.get("date"), str) else ""
        events = {
            agent: [
                Event(sub_event=str(e), id="E", date=date)
                for e in s.opt(events_obj, who, list, f"event_summary.events_{key}", [])
            ]
            for agent, who in (("agent_a", speaker_a), ("agent_b", speaker_b))
        }
        obs_obj = s.opt(observations, f"{key}_observation", dict, "observation", {})
        obs = {
            who: [(str(item[0]), _observation_source(item[1:])) for item in items if isinstance(item, list) and item]
            for who, items in obs_obj.items()
            if isinstance(items, list)
        }
        sessions.append(
            Session(
                number=n,
                date_time=s.opt(conv, f"{key}_date_time", str, "conversation", ""),
                messages=messages,
                events=events,
                summary=s.opt(summaries, f"{key}_summary", str, "session_summary", ""),
                observations=obs,
            )
        )
    qa = [_locomo_qa(s, q, f"qa[{i}]") for i, q in enumerate(s.opt(obj, "qa", list, "", []))]
    return Chat(path.stem, "locomo", speaker_a, speaker_b, sessions, qa)


def _observation_source(rest: list) -> str:
    """The message id(s) an observation cites: a string, or a list of them joined by '; '."""
    if not rest:
        return ""
    return "; ".join(map(str, rest[0])) if isinstance(rest[0], list) else str(rest[0])


def _locomo_message(s: _Shape, row: Any, where: str, session: int) -> Message:
    if not isinstance(row, dict):
        raise s.fail(where, f"expected an object, found {type(row).__name__}")
    urls = s.opt(row, "img_url", (list, str), where, [])
    return Message(
        dia_id=s.get(row, "dia_id", str, where),
        speaker=s.get(row, "speaker", str, where),
        clean_text=s.get(row, "text", str, where),
        img_url=[urls] if isinstance(urls, str) else [str(u) for u in urls],
        blip_caption=s.opt(row, "blip_caption", str, where, None),
        session=session,
    )


def _locomo_qa(s: _Shape, q: Any, where: str) -> QAItem:
    if not isinstance(q, dict):
        raise s.fail(where, f"expected an object, found {type(q).__name__}")
    answer = s.opt(q, "answer", (str, int, float), where, None)
    adversarial = s.opt(q, "adversarial_answer", (str, int, float), where, None)
    return QAItem(
        question=s.get(q, "question", str, where),
        answer=None if answer is None else str(answer),
        evidence=[str(x) for x in s.opt(q, "evidence", list, where, [])],
        category=s.get(q, "category", int, where),
        dataset="locomo",
        adversarial_answer=None if adversarial is None else str(adversarial),
    )
