"""Telegram Desktop's `result.json` -> Export: one chat ("Export chat history"), or one chat picked by name from
a full account export ("Export Telegram data", `chats.list`).

- `text` is a string or a list of strings and entity objects; the pieces are joined as written.
- Service entries (joins, calls, pins, renames) are not messages: skipped and counted.
- `date` is the wall clock of the exporting computer and is used as written; `date_unixtime` only where `date`
  is missing (then in the local zone).
- A deleted account (`from: null`) is named "Deleted Account" plus its `from_id`, so two stay two people.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from realtalk_cli.data.exports import Export, Media, Post
from realtalk_cli.errors import RealtalkError

NOT_INCLUDED = "(File not included. Change data exporting settings to download.)"


def looks_like_telegram(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("chats"), dict) and isinstance(obj["chats"].get("list"), list):
        return True
    return isinstance(obj.get("messages"), list) and "id" in obj and ("type" in obj or "name" in obj)


def chat_list(obj: dict) -> list[dict]:
    """The chats of a full export (also those left), in the export's order."""
    chats = []
    for key in ("chats", "left_chats"):
        section = obj.get(key)
        if isinstance(section, dict) and isinstance(section.get("list"), list):
            chats += [c for c in section["list"] if isinstance(c, dict)]
    return chats


def pick_chat(obj: dict, path: Path, chat: str | None) -> dict:
    if "messages" in obj and not isinstance(obj.get("chats"), dict):
        return obj
    chats = chat_list(obj)
    if not chats:
        raise RealtalkError(f"{path}: a full Telegram export without chats")

    def label(c: dict) -> str:
        return f"{c.get('name') or '(no name)'} [id {c.get('id')}]"

    if chat is None:
        shown = "; ".join(label(c) for c in chats[:30]) + ("; ..." if len(chats) > 30 else "")
        raise RealtalkError(
            f"{path}: a full Telegram export with {len(chats)} chats; pick one with --chat NAME: {shown}"
        )
    found = [c for c in chats if str(c.get("name") or "").strip() == chat.strip()] or [
        c for c in chats if str(c.get("id")) == chat.strip()
    ]
    if not found:
        found = [c for c in chats if str(c.get("name") or "").strip().casefold() == chat.strip().casefold()]
    if len(found) > 1:
        raise RealtalkError(
            f"{path}: {len(found)} chats are named {chat!r}; pick one by its id with --chat: "
            + "; ".join(label(c) for c in found)
        )
    if not found:
        raise RealtalkError(f"{path}: no chat named {chat!r}; the chats: " + "; ".join(label(c) for c in chats[:30]))
    return found[0]


def join_text(text: Any) -> str:
    """`text` as written: a string, or strings and `{type, text}` entities joined."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        pieces = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in text]
        return "".join(p for p in pieces if isinstance(p, str))
    return ""


def read_telegram(obj: dict, path: Path, chat: str | None = None) -> Export:
    picked = pick_chat(obj, path, chat)
    messages = picked.get("messages")
    if not isinstance(messages, list):
        raise RealtalkError(f"{path}: the chat has no 'messages' list")
    export = Export("telegram")
    folder = path.parent
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            export.unparsed.append((where, f"not an object: {str(m)[:80]}"))
            continue
        if m.get("type") == "service":
            export.system += 1
            continue
        when = _time(m)
        if when is None:
            export.unparsed.append((where, f"no readable date: {str(m.get('date'))[:40]}"))
            continue
        text = join_text(m.get("text"))
        media = _media(m, folder)
        if not text.strip() and not media:
            if isinstance(m.get("poll"), dict):
                export.dropped["poll"] += 1
                continue
            text = _extra_text(m)
        author, key = _author(m)
        export.posts.append(Post(when, author, key, text, media, where))
    return export


def _time(m: dict) -> datetime | None:
    date = m.get("date")
    if isinstance(date, str):
        try:
            return datetime.fromisoformat(date).replace(tzinfo=None)
        except ValueError:
            pass
    epoch = m.get("date_unixtime")
    try:
        return datetime.fromtimestamp(int(epoch)) if epoch is not None else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _author(m: dict) -> tuple[str, str]:
    name, key = m.get("from"), m.get("from_id")
    if not isinstance(name, str) or not name.strip():
        name = f"Deleted Account {key}" if key else "Deleted Account"
    return name, str(key) if key else f"name:{name}"


def _media(m: dict, folder: Path) -> list[Media]:
    found = []
    for field in ("photo", "file"):
        value = m.get(field)
        if not isinstance(value, str) or not value:
            continue
        if value.startswith("(File"):
            found.append(Media(value))
            continue
        local = folder / value
        found.append(Media(Path(value).name, (lambda p=local: p.read_bytes()) if _inside(local, folder) else None))
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve()) and path.is_file()
    except OSError:
        return False


def _extra_text(m: dict) -> str:
    """Locations, contacts and dice have no text of their own: a line that says what was sent."""
    loc = m.get("location_information")
    if isinstance(loc, dict):
        return f"location: {loc.get('latitude')}, {loc.get('longitude')}"
    contact = m.get("contact_information")
    if isinstance(contact, dict):
        name = " ".join(str(contact.get(k) or "") for k in ("first_name", "last_name")).strip()
        return f"contact: {name} {contact.get('phone_number') or ''}".strip()
    dice = m.get("dice")
    if isinstance(dice, dict):
        return str(dice.get("emoji") or "")
    return ""
