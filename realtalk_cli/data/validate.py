"""Schema and consistency checks for REALTALK, LoCoMo and LongMemEval files.

A file that cannot be parsed at all raises RealtalkError (exit 2 at the CLI); everything else
becomes a finding with a level and a location, so one run reports every problem at once. A LongMemEval
file is read one instance at a time; an instance that cannot be mapped (a missing or mistyped field) makes
the file unreadable, as it does for every command that reads it; its quirks are warnings.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from realtalk_cli.data.evidence import resolve_evidence
from realtalk_cli.data.formats import chat_from_obj, detect_layout, file_layout, read_json
from realtalk_cli.data.longmemeval import instance_chat, iter_instances, quirks
from realtalk_cli.data.model import CATEGORY_NAMES, Chat, dia_id_session
from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError

Level = Literal["error", "warning"]
_DIA_ID = re.compile(r"^D\d+:\d+$")


@dataclass
class Finding:
    level: Level
    where: str
    message: str


@dataclass
class ValidationReport:
    file: str
    layout: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: Level, where: str, message: str) -> None:
        self.findings.append(Finding(level, where, message))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "layout": self.layout,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
        }


def validate_file(path: Path) -> ValidationReport:
    if path.is_file() and file_layout(path) == "longmemeval":
        return _validate_longmemeval(path)
    obj = read_json(path)  # unreadable -> RealtalkError
    layout = detect_layout(obj)
    if layout is None:
        raise RealtalkError(
            f"{path}: not a REALTALK or LoCoMo chat (expected keys 'name' and 'session_1', or 'conversation') nor a"
            " LongMemEval list of instances"
        )
    report = ValidationReport(str(path), layout)
    try:
        chat = chat_from_obj(obj, path)
    except RealtalkError as e:
        where, _, message = str(e).removeprefix(f"{path}: ").partition(": ")
        report.add("error", where, message)
        return report
    if layout == "realtalk":
        _check_realtalk_keys(obj, report)
    _check_chat(chat, report)
    return report


def _check_realtalk_keys(obj: dict, report: ValidationReport) -> None:
    numbers = sorted(int(k.split("_")[1]) for k in obj if re.match(r"^session_\d+$", k))
    for n in numbers:
        for key in (f"session_{n}_date_time", f"events_session_{n}"):
            if key not in obj:
                report.add("error", key, "missing")
    if "qa" not in obj:
        report.add("warning", "qa", "missing: the file has no questions")


def _check_chat(chat: Chat, report: ValidationReport) -> None:
    numbers = [s.number for s in chat.sessions]
    if numbers != list(range(1, len(numbers) + 1)):
        report.add("error", "sessions", f"session numbers are not 1..{len(numbers)}: {numbers}")
    speakers = set(chat.speakers)
    for name, count in Counter(chat.speakers).items():
        if count > 1:
            report.add("error", "name", f"speaker {name!r} is named {count} times")
    dia_counts = Counter(m.dia_id for m in chat.messages())
    for dia_id, count in dia_counts.items():
        if count > 1:
            report.add("error", dia_id, f"dia_id appears {count} times in the chat; evidence to it is ambiguous")
    previous_time = None
    uncaptioned: list[str] = []
    for session in chat.sessions:
        key = f"session_{session.number}"
        if not session.messages:
            report.add("warning", key, "session has no messages")
        if session.time is None:
            report.add("error", f"{key}_date_time", f"date {session.date_time!r} does not parse")
        elif previous_time is not None and session.time < previous_time:
            report.add("warning", f"{key}_date_time", f"{session.date_time} is earlier than the previous session")
        previous_time = session.time or previous_time
        foreign: dict[int | None, int] = defaultdict(int)
        for i, m in enumerate(session.messages):
            where = f"{key}[{i}] {m.dia_id}"
            if m.speaker not in speakers:
                report.add("error", where, f"speaker {m.speaker!r} is {_none_of(chat.speakers)}")
            if not _DIA_ID.match(m.dia_id):
                report.add("error", where, f"dia_id {m.dia_id!r} is not of the form D<session>:<n>")
            elif dia_id_session(m.dia_id) != session.number:
                foreign[dia_id_session(m.dia_id)] += 1
            if not m.clean_text.strip() and not m.img_file:
                report.add("warning", where, "empty text")
            if m.date_time and m.time is None:
                report.add("error", where, f"date {m.date_time!r} does not parse")
            if m.blip_caption is not None and not m.img_file and not m.img_url:
                uncaptioned.append(m.dia_id)
        for other, count in foreign.items():
            report.add(
                "warning", key, f"{count} message ids name session D{other} (a sub-session numbered as its own session)"
            )
    if uncaptioned:
        shown = ", ".join(uncaptioned[:5]) + (", ..." if len(uncaptioned) > 5 else "")
        found = plural(len(uncaptioned), "message")
        report.add("warning", "messages", f"{found} with a caption but no picture ({shown})")
    _check_qa(chat, report)


def _none_of(speakers: tuple[str, ...]) -> str:
    if len(speakers) == 2:
        return f"neither {speakers[0]!r} nor {speakers[1]!r}"
    return f"none of the speakers in 'name' ({', '.join(map(repr, speakers))})"


def _check_qa(chat: Chat, report: ValidationReport) -> None:
    known_ids = chat.message_index()
    known_categories = CATEGORY_NAMES[chat.dataset]
    for i, q in enumerate(chat.qa):
        where = f"qa[{i}]"
        if q.category not in known_categories:
            report.add("error", where, f"unknown category {q.category} for {chat.dataset}")
        if not q.question.strip():
            report.add("error", where, "empty question")
        if not q.gold.strip():
            report.add("warning", where, "no gold answer")
        if not q.evidence:
            report.add("warning", where, "no evidence")
        if any(not e.strip() for e in q.evidence):
            report.add("warning", where, "an empty evidence id")
        dangling = resolve_evidence(chat, q.evidence, known_ids).dangling
        if dangling:
            report.add("warning", where, f"evidence {', '.join(dangling)} points to no message")


def _validate_longmemeval(path: Path) -> ValidationReport:
    """Every instance checked as it streams past; question ids must be unique within the file."""
    report = ValidationReport(str(path), "longmemeval")
    seen: dict[str, int] = {}
    count = 0
    for ref, obj in iter_instances(path):
        chat = instance_chat(obj, ref)  # a missing or mistyped field: RealtalkError, the file is unreadable
        where = f"instance {ref.index} ({ref.question_id})"
        if ref.question_id in seen:
            report.add("error", where, f"question_id also at instance {seen[ref.question_id]}")
        seen.setdefault(ref.question_id, ref.index)
        for level, key, message in quirks(obj, chat):
            report.add(level, f"{where}.{key}", message)
        count += 1
    if not count:
        report.add("warning", "instances", "the list is empty")
    return report
