"""A response cache on disk (SQLite), keyed by everything that changes the answer and nothing secret."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson


def default_cache_path() -> Path:
    root = os.environ.get("REALTALK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "realtalk"
    )
    return Path(root) / "responses.sqlite"


def cache_key(base_url: str, model: str, messages: list[dict], params: dict) -> str:
    """Endpoint, model, messages and sampling parameters; never the API key."""
    payload = {"base_url": base_url.rstrip("/"), "model": model, "messages": messages, "params": params}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class CachedResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT, prompt_tokens INTEGER,"
            " completion_tokens INTEGER, created REAL DEFAULT (unixepoch('subsec')))"
        )

    def get(self, key: str) -> CachedResponse | None:
        row = self._db.execute(
            "SELECT text, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
        ).fetchone()
        return CachedResponse(*row) if row else None

    def put(self, key: str, response: CachedResponse) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, text, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?)",
            (key, response.text, response.prompt_tokens, response.completion_tokens),
        )

    def close(self) -> None:
        self._db.close()
