"""A loopback HTTP file server with Range support, for testing `realtalk download`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@contextmanager
def serve_files(
    root: Path, overrides: dict[str, bytes] | None = None, ranges: bool = True, misbehave: str | None = None
) -> Iterator[str]:
    """Serve `root` (plus in-memory `overrides` by relative path) on 127.0.0.1; yields the base URL.

    `misbehave`: "trickle" (a byte every 0.2 s), "short" (announces more bytes than it sends, then closes),
    "endless" (no length, bytes without end) — for every file.
    """
    overrides = overrides or {}
    stop = threading.Event()
    requests: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            rel = self.path.lstrip("/")
            requests.append((rel, self.headers.get("Range")))
            if rel in overrides:
                body = overrides[rel]
            elif (root / rel).is_file():
                body = (root / rel).read_bytes()
            else:
                self.send_error(404)
                return
            if misbehave:
                self._misbehave(body)
                return
            start = 0
            header = self.headers.get("Range")
            if ranges and header and header.startswith("bytes="):
                start = int(header[6:].split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

        def _misbehave(self, body: bytes) -> None:
            self.send_response(200)
            if misbehave == "short":
                self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            try:
                if misbehave == "short":
                    self.wfile.write(body)
                elif misbehave == "trickle":
                    for byte in body:
                        if stop.wait(0.2):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                else:
                    while not stop.is_set():
                        self.wfile.write(b"x" * 65536)
            except OSError:
                pass
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        serve_files.requests = requests  # type: ignore[attr-defined]
        yield url
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
