"""A response cache on disk (SQLite), keyed by everything that changes the answer and nothing secret.

Writes go through a background thread that commits them in batches: a commit costs milliseconds, and
on the event loop every request in flight would wait for it. A response put and not yet written is
already served by `get`; `close` writes everything still pending.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import queue
import sqlite3
import sys
import threading
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


_STOP = object()


class ResponseCache:
    """Only validated replies go in; a row that does not look like one is ignored on the way out."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a power cut may lose the last commits
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT, prompt_tokens INTEGER,"
            " completion_tokens INTEGER, created REAL DEFAULT (unixepoch('subsec')))"
        )
        self._lock = threading.Lock()
        self._pending: dict[str, CachedResponse] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="response-cache", daemon=True)
        self._writer.start()
        # A path that ends the process without close() (an error or Ctrl-C between the replies and close) still
        # writes what it was given: both exits (cli.main's fast one too) run atexit handlers.
        atexit.register(self.close)

    def get(self, key: str) -> CachedResponse | None:
        if (pending := self._pending.get(key)) is not None:
            return pending
        with self._lock:
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
        self._pending[key] = response
        self._queue.put(key)

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            keys = [self._queue.get()]
            while not self._queue.empty():
                keys.append(self._queue.get())
            stop = _STOP in keys
            rows = [(k, r.text, r.prompt_tokens, r.completion_tokens) for k in keys if (r := self._pending.get(k))]
            with self._lock:
                if rows and self._db is not None:
                    try:
                        self._db.execute("BEGIN")
                        self._db.executemany(
                            "INSERT OR REPLACE INTO responses (key, text, prompt_tokens, completion_tokens)"
                            " VALUES (?, ?, ?, ?)",
                            rows,
                        )
                        self._db.execute("COMMIT")
                    except sqlite3.Error as e:
                        self._give_up(e)
            for k, *_ in rows:
                self._pending.pop(k, None)

    def _give_up(self, error: Exception) -> None:
        # A full disk or a cache made read-only mid-run costs the cache, never the run.
        _warn(f"response cache {self.path} failed ({error}); continuing without the cache")
        self._close_db()

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join()
        with self._lock:
            self._close_db()
