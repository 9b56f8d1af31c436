"""Facebook Messenger's "Download your information" JSON (`message_1.json`, `message_2.json`... of one thread)
-> Export.

- Every file lists newest first and `message_1.json` holds the newest: all files are read and merged by time.
- Strings are UTF-8 bytes written as Latin-1 escapes ("Zo\\u00c3\\u00ab"): repaired (a string that does not
  decode is left alone).
- `timestamp_ms` has no zone: the local one applies. Unsent messages are dropped (counted with deleted ones);
  `Subscribe`/`Unsubscribe` entries are system entries; `Call` entries are call notices.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from realtalk_cli.data.exports import Export, Media, Post
from realtalk_cli.errors import RealtalkError

MESSAGE_FILE = re.compile(r"^message_(\d+)\.json$")
MEDIA_KEYS = ("photos", "videos", "gifs", "audio_files", "files")


def looks_like_messenger(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("messages"), list) and isinstance(obj.get("participants"), list)


def message_files(folder: Path) -> list[Path]:
    """The thread's message_N.json files, by N."""
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := MESSAGE_FILE.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def fix(value: Any) -> Any:
    """Undo the Latin-1 escaping of UTF-8 in every string of a parsed file."""
    if isinstance(value, str):
        try:
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    if isinstance(value, list):
        return [fix(v) for v in value]
    if isinstance(value, dict):
        return {k: fix(v) for k, v in value.items()}
    return value


def read_messenger(files: list[tuple[Path, Any]]) -> Export:
    export = Export("messenger")
    for path, obj in files:
        if not looks_like_messenger(obj):
            raise RealtalkError(f"{path}: not a Messenger message file (no 'participants' and 'messages')")
        obj = fix(obj)
        export.names += [str(p["name"]) for p in obj["participants"] if isinstance(p, dict) and p.get("name")]
        for i, m in enumerate(obj["messages"]):
            where = f"{path.name} messages[{i}]"
            if not isinstance(m, dict):
                export.unparsed.append((where, f"not an object: {str(m)[:80]}"))
                continue
            kind = m.get("type")
            if kind in ("Subscribe", "Unsubscribe"):
                export.system += 1
                continue
            if m.get("is_unsent"):
                export.dropped["deleted"] += 1
                continue
            if kind == "Call":
                export.dropped["call"] += 1
                continue
            when = _time(m.get("timestamp_ms"))
            sender = m.get("sender_name")
            if when is None or not isinstance(sender, str):
                export.unparsed.append((where, f"no sender or timestamp: {str(m)[:80]}"))
                continue
            text = m.get("content") if isinstance(m.get("content"), str) else ""
            share = m.get("share")
            if not text and isinstance(share, dict) and isinstance(share.get("link"), str):
                text = share["link"]
            export.posts.append(Post(when, sender, sender, text, _media(m, path.parent), where))
    return export


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _media(m: dict, folder: Path) -> list[Media]:
    uris = [
        item["uri"]
        for key in MEDIA_KEYS
        for item in (m.get(key) if isinstance(m.get(key), list) else [])
        if isinstance(item, dict) and isinstance(item.get("uri"), str)
    ]
    sticker = m.get("sticker")
    if isinstance(sticker, dict) and isinstance(sticker.get("uri"), str):
        uris.append(sticker["uri"])
    return [Media(Path(uri).name or uri, _reader(uri, folder)) for uri in uris]


def _reader(uri: str, folder: Path):
    """The file when the archive holds it: `uri` is relative to the archive's root, a few folders up."""
    parts = Path(uri).parts
    if not parts or ".." in parts or Path(uri).is_absolute():
        return None
    for base in [folder, *folder.parents][:6]:
        candidate = base / uri
        if candidate.is_file():
            return candidate.read_bytes
    local = folder / Path(*parts[-2:])  # photos/x.jpg beside the message files
    return local.read_bytes if local.is_file() else None
