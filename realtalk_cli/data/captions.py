"""Picture captions (`blip_caption`) for converted chats: borrowed from a published chat (`--captions-from`),
or written by a `Captioner` from the pictures' bytes (a model-backed one lives in the tasks layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from realtalk_cli.data.formats import load_chat
from realtalk_cli.data.model import Chat, Message, Session
from realtalk_cli.data.rawsheet import RawSheet, picture_file_name


@dataclass
class Captions:
    """Captions borrowed from a published chat: by picture name, and by message for pasted pictures."""

    by_picture: dict[str, str] = field(default_factory=dict)
    by_message: dict[tuple[int, str], str] = field(default_factory=dict)


def captions_from(path: Path) -> Captions:
    """The published caption describes the earliest picture attached to its message."""
    captions = Captions()
    for m in load_chat(path).messages():
        if m.blip_caption is None or not m.img_file:
            continue
        captions.by_picture.setdefault(earliest_picture(m.img_file), m.blip_caption)
        captions.by_message[(m.session, m.dia_id)] = m.blip_caption
    return captions


def earliest_picture(img_file: list[str]) -> str:
    """The earliest of a message's pictures, the one its caption describes."""
    # WhatsApp names start with a running index, so the smallest name is the earliest picture.
    return min(re.sub(r"(_opt)?\.jpe?g$", "", f) for f in img_file)


def apply_captions(sessions: list[Session], captions: Captions, unnamed: set[str]) -> None:
    for session in sessions:
        for m in session.messages:
            if not m.img_file:
                continue
            caption = captions.by_picture.get(earliest_picture(m.img_file))
            if caption is None and earliest_picture(m.img_file) in unnamed:
                caption = captions.by_message.get((m.session, m.dia_id))
            if caption is not None:
                m.blip_caption = caption


class Captioner(Protocol):
    """Writes `blip_caption` for pictures; a model-backed one lives in the tasks layer."""

    label: str

    def caption(self, requests: list[tuple[Message, bytes]]) -> int:
        """Set `blip_caption` on each message from its picture's bytes; return how many were captioned."""


def caption_requests(chat: Chat, sheet: RawSheet) -> list[tuple[Message, bytes]]:
    """The earliest picture of each message that has pictures and no caption (as `blip_caption` does)."""
    by_name = {picture_file_name(p): p for p in sheet.pictures if p.media}
    return [
        (m, sheet.read_media(picture))
        for m in chat.messages()
        if m.img_file and m.blip_caption is None and (picture := by_name.get(earliest_picture(m.img_file)))
    ]
