"""DiscordChatExporter JSON (one channel per file) -> Export.

- Only `Default` and `Reply` entries are messages; every other type (calls, renames, pins, joins) carries an
  author but is a system entry: skipped and counted.
- People are told apart by `author.id` and shown by their nickname, else their name; bots are kept and listed.
- An id that appears twice (merged, overlapping exports) is one message.
- `timestamp` is written with the exporter's offset: its wall clock is used as written.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from realtalk_cli.data.exports import Export, Media, Post

MESSAGE_TYPES = ("Default", "Reply")


def looks_like_discord(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("messages"), list)
        and isinstance(obj.get("channel"), dict)
        and isinstance(obj.get("guild"), dict)
    )


def read_discord(obj: dict, path: Path) -> Export:
    export = Export("discord")
    seen: set[str] = set()
    for i, m in enumerate(obj["messages"]):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            export.unparsed.append((where, f"not an object: {str(m)[:80]}"))
            continue
        mid = str(m.get("id", ""))
        if mid and mid in seen:
            continue
        seen.add(mid)
        if m.get("type", "Default") not in MESSAGE_TYPES:
            if m.get("type") == "Call":
                export.dropped["call"] += 1
            else:
                export.system += 1
            continue
        author = m.get("author") if isinstance(m.get("author"), dict) else {}
        when = _time(m.get("timestamp"))
        if when is None:
            export.unparsed.append((where, f"no readable timestamp: {str(m.get('timestamp'))[:40]}"))
            continue
        names = [v for v in (author.get("nickname"), author.get("name")) if isinstance(v, str) and v.strip()]
        name = names[0] if names else "Unknown"
        key = str(author.get("id") or name)
        for alias in (author.get("name"), author.get("nickname")):
            if isinstance(alias, str) and alias and alias != name:
                export.names.append(alias)
        media = [
            Media(str(a.get("fileName") or Path(str(a.get("url", ""))).name or "attachment"))
            for a in _list(m.get("attachments"))
            if isinstance(a, dict)
        ]
        media += [Media(f"sticker: {s.get('name')}") for s in _list(m.get("stickers")) if isinstance(s, dict)]
        text = m.get("content") if isinstance(m.get("content"), str) else ""
        export.posts.append(Post(when, name, key, text, media, where, bot=bool(author.get("isBot"))))
    for m in obj["messages"]:
        for mention in _list(m.get("mentions")) if isinstance(m, dict) else []:
            if isinstance(mention, dict):
                export.names += [str(v) for k in ("name", "nickname") if (v := mention.get(k))]
    return export


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None
