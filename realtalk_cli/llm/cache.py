"""A response cache on disk (SQLite), keyed by everything that changes the answer and nothing secret."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
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


def open_cache(use: bool = True, path: Path | None = None) -> ResponseCache | None:
    """The response cache, or None when not wanted or unusable (corrupt, read-only: warn and run without)."""
    if not use:
        return None
    path = path or default_cache_path()
    try:
        return ResponseCache(path)
    except (OSError, sqlite3.Error) as e:
        _warn(f"response cache {path} is unusable ({e}); running without the cache")
        return None


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


class ResponseCache:
    """Only validated replies go in; a row that does not look like one is ignored on the way out."""

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
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as e:
            self._give_up(e)
            return None
        if not row or not isinstance(row[0], str) or not row[0].strip():
            return None
        if not all(type(n) is int and n >= 0 for n in row[1:]):
            return None
        return CachedResponse(*row)

    def put(self, key: str, response: CachedResponse) -> None:
        if self._db is None:
            return
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, text, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?)",
                (key, response.text, response.prompt_tokens, response.completion_tokens),
            )
        except sqlite3.Error as e:
            self._give_up(e)

    def _give_up(self, error: Exception) -> None:
        # A full disk or a cache made read-only mid-run costs the cache, never the run.
        _warn(f"response cache {self.path} failed ({error}); continuing without the cache")
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
