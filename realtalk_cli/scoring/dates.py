"""Dates in free-text answers, written one canonical way so that F1 compares dates, not date formats.

The paper's token F1 scores `29.12.2023` against `29 December 2023` as 0 (the first is one token after
punctuation is removed). `normalise_dates` rewrites every date it recognises as `<day> <month> <year>`
(`29 december 2023`), `<month> <year>` or `<day> <month>`: day without leading zero, month by full
name, the time of day after a dotted date dropped. Recognised: `29.12.2023[, 22:42:04]`, `2023-12-29`,
`29/12/2023` (day first when the first number is over 12, else month first as US writers do),
`29th (of) December(,) 2023`, `December 29(th)(,) 2023`, `01.2024`, `December(,) 2023`, `29 December`,
`December 29`, and short month names (`Dec`, `Sept.`). Anything else is left as is.
"""

from __future__ import annotations

import re

MONTHS = ("january february march april may june july august september october november december").split()
_MONTH = r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"  # noqa: E501
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
_TIME = r"(?:,?\s*(?:at\s+)?\d{1,2}:\d\d(?::\d\d)?)?"

_PATTERNS = [
    re.compile(r"\b(?P<year>(?:19|20)\d\d)-(?P<mnum>[01]?\d)-(?P<day>[0-3]?\d)\b"),
    re.compile(rf"\b(?P<day>[0-3]?\d)\.(?P<mnum>[01]?\d)\.{_YEAR}\b{_TIME}"),
    re.compile(rf"\b(?P<a>[0-3]?\d)/(?P<b>[0-3]?\d)/{_YEAR}\b"),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.I),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I),
    re.compile(rf"\b(?P<mnum>[01]?\d)\.{_YEAR}\b"),
    re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.I),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?![a-z])", re.I),
    re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?!:)", re.I),
]


def _month_name(match: re.Match) -> str | None:
    groups = match.groupdict()
    if groups.get("mon"):
        prefix = groups["mon"].lower().rstrip(".")[:3]
        return next(m for m in MONTHS if m.startswith(prefix))
    number = int(groups["mnum"])
    return MONTHS[number - 1] if 1 <= number <= 12 else None


def _canonical(match: re.Match) -> str:
    groups = match.groupdict()
    if groups.get("a"):  # a slash date: decide which number is the day
        a, b = int(groups["a"]), int(groups["b"])
        day, month = (a, b) if a > 12 else (b, a)
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return match.group(0)
        return f"{day} {MONTHS[month - 1]} {groups['year']}"
    month = _month_name(match)
    day = int(groups["day"]) if groups.get("day") else None
    if month is None or (day is not None and not 1 <= day <= 31):
        return match.group(0)
    parts = [str(day)] if day is not None else []
    parts.append(month)
    if groups.get("year"):
        parts.append(groups["year"])
    return " ".join(parts)


def normalise_dates(text: str) -> str:
    """`text` with every date it recognises written as `29 december 2023` (or `december 2023`, `29 december`)."""
    for pattern in _PATTERNS:
        text = pattern.sub(_canonical, text)
    return text
