"""`convert --anonymize`: every person becomes a stable pseudonym ("Person 1", "Person 2"... in the order they
first write; people who are only named come after), also where a name appears inside a text or a file name;
phone numbers, e-mail addresses and URLs are masked.

A name is replaced whole (any case), and so is each capitalised part of it (a first name: "Dmitry" of
"Dmitry Starkov", case as written) wherever it stands, even inside a longer word: better an odd word than a name
left behind. What was replaced by what is returned for `--anonymize-map` and written nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from realtalk_cli.data.model import Chat

_SP = r"[ \u00a0\u202f\-().]"
PHONE = re.compile(
    rf"(?<![\w+])(?:\+|00)\d(?:{_SP}{{0,2}}\d){{6,14}}(?!\w)|(?<![\w+])\(?\d(?:{_SP}{{0,2}}\d){{8,14}}(?!\w)"
)
PLUS_PHONE = re.compile(rf"\+\d(?:{_SP}{{0,2}}\d){{6,14}}")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_INVISIBLE = str.maketrans(
    {0x200E: None, 0x200F: None, 0x202A: None, 0x202C: None, 0x2068: None, 0x2069: None, 0xA0: " ", 0x202F: " "}
)


def mask(text: str, file_name: bool = False) -> str:
    """URLs, e-mail addresses and phone numbers as [url], [email], [phone]."""
    text = URL.sub("[url]", text)
    text = EMAIL.sub("[email]", text)
    return (PLUS_PHONE if file_name else PHONE).sub("[phone]", text)


def pseudonyms(speakers: list[str], others: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for name in [*speakers, *others]:
        if name and name not in mapping and name.translate(_INVISIBLE).strip() not in mapping:
            mapping[name] = f"Person {len(set(mapping.values())) + 1}"
    return mapping


def replacer(mapping: dict[str, str]) -> Callable[[str], str]:
    """A function that replaces every name of `mapping`, and every capitalised part of one, in a text."""
    whole: dict[str, str] = {}
    parts: dict[str, str] = {}
    for name, alias in mapping.items():
        for form in {name, name.translate(_INVISIBLE).strip()}:
            if form:
                whole.setdefault(form.casefold(), alias)
        for part in re.split(r"[\s\-_.,;:()'\"@~]+", name.translate(_INVISIBLE)):
            if len(part) >= 2 and not part[0].islower() and any(c.isalpha() for c in part):
                parts.setdefault(part, alias)
    alternatives = [(k, True) for k in whole] + [(k, False) for k in parts]
    if not alternatives:
        return lambda text: text
    alternatives.sort(key=lambda a: -len(a[0]))

    def pattern(text: str, any_case: bool) -> str:
        body = re.escape(text)
        if len(text) <= 2:
            body = rf"(?<!\w){body}(?!\w)"
        return f"(?i:{body})" if any_case else body

    rx = re.compile("|".join(pattern(t, c) for t, c in alternatives))

    def sub(match: re.Match) -> str:
        found = match.group(0)
        return parts.get(found) or whole.get(found.casefold()) or "Person"

    return lambda text: rx.sub(sub, text)


def anonymize_chat(chat: Chat, other_names: list[str]) -> dict[str, str]:
    """Replace names and mask contact details in place; returns original -> pseudonym."""
    mapping = pseudonyms(list(chat.speakers), other_names)
    replace = replacer(mapping)
    chat.speaker_1, chat.speaker_2 = mapping[chat.speaker_1], mapping[chat.speaker_2]
    chat.extra_speakers = [mapping[s] for s in chat.extra_speakers]
    for m in chat.messages():
        m.speaker = mapping[m.speaker]
        m.clean_text = replace(mask(m.clean_text))
        m.img_file = [replace(mask(f, file_name=True)) for f in m.img_file]
        m.img_url = URL.findall(m.clean_text)
    return mapping
