"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: latency, injected faults, usage filled in."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "sk-test-secret-123"


def _text(content: str | list) -> str:
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def default_reply(request: dict) -> str:
    return "I don't know"


@dataclass
class FakeLLM:
    models: tuple[str, ...] = ("gpt-4o-mini", "judge-model")
    latency_s: float = 0.0
    reply: Callable[[dict], str] = default_reply
    faults: list[str] = field(default_factory=list)  # "429", "500", "drop", consumed one per request
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (a run stopped with requests in flight) is normal here, not a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve_llm(fake: FakeLLM) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            if body.get("model") not in fake.models:
                self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})
                return
            with fake.lock:
                fault = fake.faults.pop(0) if fake.faults else None
                fake.requests.append(body)
            if fake.latency_s:
                time.sleep(fake.latency_s)
            if fault == "429":
                self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
                return
            if fault == "500":
                self._send(500, {"error": {"message": "server error"}})
                return
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            text = fake.reply(body)
            prompt_tokens = sum(len(_text(m["content"]).split()) for m in body["messages"])
            self._send(
                200,
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(text.split()),
                        "total_tokens": prompt_tokens + len(text.split()),
                    },
                },
            )

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
