"""How chat messages read in a prompt, shared by every context (full chat, retrieval, memories)."""

from __future__ import annotations

from realtalk_cli.data.model import Message


def render_message(m: Message) -> str:
    """One turn as the LoCoMo/REALTALK evaluation scripts write it."""
    line = f'{m.speaker} said, "{m.clean_text}"'
    if m.blip_caption and (m.img_file or m.img_url):
        line += f"\n[shares {m.blip_caption}]"
    return line


def session_header(date_time: str) -> str:
    return f"DATE: {date_time}\nCONVERSATION:\n"
