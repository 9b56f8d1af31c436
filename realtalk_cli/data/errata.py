"""Errata files: corrected gold answers for published questions, in the two formats the literature uses
(`shared/LITERATURE_PROTOCOLS.md` §4.1 and §5). realtalk ships no errata of its own: the file is the user's.

- **The LoCoMo audit** (dial481/locomo-audit `errors.json`): a JSON list of objects with `question_id`
  `locomo_<i>_qa<j>` (i = the sample's 0-based position in locomo10.json, j = its index in that sample's `qa`),
  `question`, `golden_answer`, `category`, `error_type`, `cited_evidence`, `correct_evidence`, `reasoning`,
  `correct_answer`. Every error type but `WRONG_CITATION` corrects the gold with `correct_answer`;
  `WRONG_CITATION` corrects the evidence only, and its `correct_answer` (often the gold plus a remark) is never
  used as a gold. The audit covered LoCoMo's categories 1-4.
- **REALTALK reference fixes** (RZ-Q/MCC-OPD `data/reference-fixes.json`): `question_id`
  `realtalk_<file stem>_qa<j>`, `type`, `accepted_answers` (the first is the new gold, as its
  `prepare_realtalk.py` makes it), `answer_aliases` (other spellings), `reason`, `judge_rule`,
  `supporting_turn_ids`. The other accepted answers and the aliases are shown to the judge, not used by F1.

One file may hold entries of either kind; each entry's kind is read from its `question_id`. A malformed file
(not JSON, not a list, an entry with a missing or mistyped field, two entries correcting one gold differently)
is one error naming the file and the entry. An entry whose id names no question (an unknown shape, a sample
number past locomo10's ten) is kept: it is counted and listed where the errata are applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtalk_cli.data.formats import read_json
from realtalk_cli.errors import RealtalkError

# locomo10.json's samples in file order (§4.1), and the split files the REALTALK repository (and shared/locomo)
# names Chat_1 ... Chat_10 in the same order.
LOCOMO_SAMPLES = (
    "conv-26", "conv-30", "conv-41", "conv-42", "conv-43", "conv-44", "conv-47", "conv-48", "conv-49", "conv-50",
)  # fmt: skip
EVIDENCE_ONLY = "WRONG_CITATION"
AUDITED_LOCOMO_CATEGORIES = (1, 2, 3, 4)  # the audit ran over these only: no ceiling for category 5

_LOCOMO_ID = re.compile(r"locomo_(\d+)_qa(\d+)")
_REALTALK_ID = re.compile(r"realtalk_(.+)_qa(\d+)")


@dataclass(frozen=True)
class Erratum:
    """One entry of an errata file, as read (which question of which chat it names is decided where it is applied)."""

    position: int  # 0-based index in the file, for messages
    question_id: str
    dataset: str | None  # "locomo" or "realtalk"; None: the id has neither shape
    sample: int | None  # LoCoMo: i, the position in locomo10.json
    chat: str | None  # REALTALK: the file stem
    qa_index: int | None
    kind: str  # the audit's error_type or the fix's type
    gold: str | None  # the corrected gold; None for an evidence-only correction
    aliases: tuple[str, ...] = ()  # other accepted answers and spellings, for the judge
    question: str | None = None  # the question text the entry quotes (the audit's), checked against the data
    published: str | None = None  # the gold the entry says was published (the audit's golden_answer)

    @property
    def changes_gold(self) -> bool:
        return self.gold is not None

    @property
    def judge_gold(self) -> str | None:
        """What a judge is shown as the gold: the corrected gold, and the other accepted answers after it."""
        if self.gold is None:
            return None
        if not self.aliases:
            return self.gold
        return f"{self.gold} (also accepted: {'; '.join(self.aliases)})"


@dataclass(frozen=True)
class Errata:
    path: Path
    sha256: str
    entries: tuple[Erratum, ...]

    @property
    def corrections(self) -> list[Erratum]:
        return [e for e in self.entries if e.changes_gold]


def read_errata(path: Path) -> Errata:
    """An errata file, checked entry by entry; bad input is one RealtalkError naming the file and the entry."""
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO would block the read
        raise RealtalkError(f"{path}: not a regular file")
    data = read_json(path)
    if not isinstance(data, list):
        raise RealtalkError(f"{path}: expected a JSON list of errata entries, found {_type(data)}")
    entries = tuple(_entry(path, n, obj) for n, obj in enumerate(data))
    seen: dict[str, Erratum] = {}
    for e in entries:
        if not e.changes_gold:
            continue
        first = seen.setdefault(e.question_id, e)
        if first is not e and (first.gold, first.aliases) != (e.gold, e.aliases):
            raise RealtalkError(
                f"{path}: [{first.position}] and [{e.position}] both correct the gold of {e.question_id}, differently"
            )
    return Errata(path, hashlib.sha256(path.read_bytes()).hexdigest(), entries)


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _field(path: Path, n: int, obj: dict, key: str, kind: type, required: bool = True) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise RealtalkError(f"{path}: [{n}]: missing field '{key}'")
        return None
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RealtalkError(f"{path}: [{n}].{key}: expected {kind.__name__}, found {_type(value)}")
    return value


def _strings(path: Path, n: int, obj: dict, key: str, required: bool = False) -> tuple[str, ...]:
    values = _field(path, n, obj, key, list, required) or []
    if not all(isinstance(v, str) for v in values):
        raise RealtalkError(f"{path}: [{n}].{key}: expected a list of strings")
    return tuple(values)


def _entry(path: Path, n: int, obj: Any) -> Erratum:
    if not isinstance(obj, dict):
        raise RealtalkError(f"{path}: [{n}]: expected an object, found {_type(obj)}")
    qid = _field(path, n, obj, "question_id", str)
    if m := _LOCOMO_ID.fullmatch(qid):
        kind = _field(path, n, obj, "error_type", str)
        correct = _field(path, n, obj, "correct_answer", str)
        if kind != EVIDENCE_ONLY and not correct.strip():
            raise RealtalkError(f"{path}: [{n}].correct_answer: empty (a {kind} entry corrects the gold with it)")
        published = obj.get("golden_answer")
        _field(path, n, obj, "category", int, required=False)
        for key in ("cited_evidence", "correct_evidence"):
            _strings(path, n, obj, key)
        return Erratum(
            position=n,
            question_id=qid,
            dataset="locomo",
            sample=int(m.group(1)),
            chat=None,
            qa_index=int(m.group(2)),
            kind=kind,
            gold=None if kind == EVIDENCE_ONLY else correct,
            question=_field(path, n, obj, "question", str),
            published=None if published is None else str(published),
        )
    if m := _REALTALK_ID.fullmatch(qid):
        accepted = _strings(path, n, obj, "accepted_answers", required=True)
        if not accepted or not accepted[0].strip():
            raise RealtalkError(f"{path}: [{n}].accepted_answers: empty (the first accepted answer is the gold)")
        aliases = _strings(path, n, obj, "answer_aliases")
        _strings(path, n, obj, "supporting_turn_ids")
        others = tuple(dict.fromkeys(a for a in (*accepted[1:], *aliases) if a != accepted[0]))
        return Erratum(
            position=n,
            question_id=qid,
            dataset="realtalk",
            sample=None,
            chat=m.group(1),
            qa_index=int(m.group(2)),
            kind=_field(path, n, obj, "type", str, required=False) or "reference-fix",
            gold=accepted[0],
            aliases=others,
        )
    # An id of neither shape names no question: kept, to be counted and listed where the file is applied.
    return Erratum(n, qid, None, None, None, None, str(obj.get("error_type") or obj.get("type") or "?"), None)
