"""Prompt text shared by every task: the editable prompt files of configs/prompts, their hashes (a run's
identity records them), filling a template, and how chat messages read in a prompt (full chat, retrieval,
memories).
"""

from __future__ import annotations

import hashlib
import re

from realtalk_cli.data.model import Message
from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.providers import config_dir


def prompt_text(name: str) -> str:
    path = config_dir() / "prompts" / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RealtalkError(f"{path}: no such prompt file") from None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


_FIELD = re.compile(r"\{(\w+)\}")


def fill(template: str, **values: str) -> str:
    """The template's `{name}` fields filled in one pass, as `str.format` fills them: text put in is never read
    for fields again (a chat message saying "{question}" stays as it is). Not `str.format` itself: it would choke
    on other braces, such as the judge's JSON example."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def render_message(m: Message) -> str:
    """One turn as the LoCoMo/REALTALK evaluation scripts write it."""
    line = f'{m.speaker} said, "{m.clean_text}"'
    if m.blip_caption and (m.img_file or m.img_url):
        line += f"\n[shares {m.blip_caption}]"
    return line


def session_header(date_time: str) -> str:
    return f"DATE: {date_time}\nCONVERSATION:\n"
