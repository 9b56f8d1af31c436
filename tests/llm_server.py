"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: latency, injected faults, usage filled in.

Faults are consumed one per request. Besides transport faults ("429", "500", "drop") it misbehaves the
ways real endpoints and proxies do while answering 200: see BAD_REPLIES, plus "endless" (a body that never
ends), "huge" (20 MB), "trickle" (one byte per second), "echo_key" (a 400 quoting the caller's key), and
BROKEN_REPLIES: a body cut off, bad gzip, a redirect, a 300 MB or decompressing-to-200 MB error body, the key
quoted in a 200 that is not JSON or in the answer itself.
With `prefix_cache` it behaves as OpenAI's automatic prompt caching: a prompt whose first 1,024 or more
tokens (here: words) repeat a prompt already answered reports them, in 128-token steps, as
`usage.prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .llm_batches import FakeBatches

API_KEY = "sk-test-secret-123"


@functools.cache
def _bomb() -> bytes:
    """About 200 KB of gzip that decompresses to 200 MB."""
    import gzip

    return gzip.compress(b"\0" * 200_000_000, compresslevel=9)


def _text(content: str | list) -> str:
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def _completion(content, usage) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage,
    }


_GOOD_USAGE = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}

# 200 replies that are not a usable chat completion: raw bytes as sent.
BAD_REPLIES: dict[str, bytes] = {
    "truncated": json.dumps(_completion("Paris", _GOOD_USAGE)).encode()[:60],
    "html": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "plain": b"upstream connect error or disconnect/reset before headers",
    "empty_body": b"",
    "json_list": b"[1, 2, 3]",
    "json_string": b'"Paris"',
    "choices_empty": json.dumps({**_completion("x", _GOOD_USAGE), "choices": []}).encode(),
    "choices_null": json.dumps({**_completion("x", _GOOD_USAGE), "choices": None}).encode(),
    "message_null": json.dumps({**_completion("x", _GOOD_USAGE), "choices": [{"index": 0, "message": None}]}).encode(),
    "content_null": json.dumps(_completion(None, _GOOD_USAGE)).encode(),
    "content_empty": json.dumps(_completion("", _GOOD_USAGE)).encode(),
    "content_number": json.dumps(_completion(42, _GOOD_USAGE)).encode(),
    "content_list": json.dumps(_completion(["Par", "is"], _GOOD_USAGE)).encode(),
    "usage_fields_null": json.dumps(_completion("Paris", {"prompt_tokens": None, "completion_tokens": None})).encode(),
    "usage_negative": json.dumps(_completion("Paris", {"prompt_tokens": -1000000, "completion_tokens": 1})).encode(),
    "usage_strings": json.dumps(_completion("Paris", {"prompt_tokens": "5", "completion_tokens": "1"})).encode(),
    "usage_absurd": json.dumps(_completion("Paris", {"prompt_tokens": 10**12, "completion_tokens": 1})).encode(),
    "usage_list": json.dumps(_completion("Paris", [5, 1])).encode(),
}
SLOW_REPLIES = ("endless", "huge", "trickle")
BROKEN_REPLIES = (
    *("cut_off", "bad_gzip", "redirect", "error_long", "error_bomb", "error_cut_off", "error_latin1_header"),
    *("echo_key_plain", "echo_key_answer", "echo_key_masked", "echo_key_encoded"),
)
REDIRECT_TO = "http://127.0.0.1:9/v1/chat/completions"  # the discard port: nothing there answers
# A usable reply without usage (some local servers): counted by our tokenizer and flagged as estimated.
NO_USAGE_REPLY = json.dumps(_completion("Paris", None)).encode()


def default_reply(request: dict) -> str:
    return "I don't know"


def completion_body(fake: FakeLLM, body: dict) -> dict:
    """A chat completion for a request body: the reply, and usage counted in words (prefix cache included)."""
    text = fake.reply(body)
    words = fake.prompt_words(body)
    cached_tokens = fake.cached_tokens(words)
    fake.remember(words)
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": len(words),
            "completion_tokens": len(text.split()),
            "total_tokens": len(words) + len(text.split()),
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        },
    }


@dataclass
class FakeLLM:
    models: tuple[str, ...] = ("gpt-4o-mini", "judge-model")
    latency_s: float = 0.0
    reply: Callable[[dict], str] = default_reply
    faults: list[str] = field(default_factory=list)  # "429", "500", "drop", consumed one per request
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # ends endless and trickling replies
    in_flight: int = 0
    max_in_flight: int = 0  # the most chat-completion requests the server held at once
    record: bool = True  # keep every request body in `requests` (a long benchmark turns it off)
    prefix_cache: bool = False
    cached_prefixes: set[bytes] = field(default_factory=set)
    batches: FakeBatches = field(default=None)  # the files and batches endpoints (tests/llm_batches.py)
    authorizations: list[str] = field(default_factory=list)  # the Authorization header of every request
    wire: list[tuple[list[tuple[str, str]], bytes]] = field(default_factory=list)  # recorded: headers, raw body

    def __post_init__(self) -> None:
        if self.batches is None:
            self.batches = FakeBatches(lambda body: completion_body(self, body), self.models)

    def prompt_words(self, body: dict) -> list[str]:
        return [w for m in body["messages"] for w in _text(m["content"]).split()]

    def cached_tokens(self, words: list[str]) -> int:
        """The longest answered prefix, in 128-word steps from 1,024; answered prompts are remembered."""
        if not self.prefix_cache:
            return 0
        cached, digests, h = 0, [], hashlib.sha1()
        for end in range(128, len(words) + 1, 128):
            h.update(" ".join(words[end - 128 : end]).encode() + b" ")
            digests.append(h.digest())
            if end >= 1024 and digests[-1] in self.cached_prefixes:
                cached = end
        return cached

    def remember(self, words: list[str]) -> None:
        if self.prefix_cache:
            h = hashlib.sha1()
            with self.lock:
                for end in range(128, len(words) + 1, 128):
                    h.update(" ".join(words[end - 128 : end]).encode() + b" ")
                    self.cached_prefixes.add(h.digest())


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

        def _send_raw(self, raw: bytes, content_type: str = "application/json") -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _misbehave(self, fault: str) -> None:
            """A body without end, a 20 MB body, or a valid reply sent one byte per second."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.close_connection = True
            try:
                if fault == "huge":
                    raw = json.dumps(_completion("x" * 20_000_000, _GOOD_USAGE)).encode()
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                self.end_headers()  # no length: the body ends when the connection does
                if fault == "endless":
                    self.wfile.write(b'{"choices": [{"message": {"content": "')
                    while not fake.stop.is_set():
                        self.wfile.write(b"la" * 32768)
                else:
                    for byte in json.dumps(_completion("Paris", _GOOD_USAGE)).encode():
                        if fake.stop.wait(1.0):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
            except OSError:
                pass  # the client gave up, as it should

        def do_GET(self) -> None:
            fake.authorizations.append(self.headers.get("Authorization") or "")
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})
            elif self.path.startswith(("/v1/files/", "/v1/batches")):
                status, answer = fake.batches.get(self.path)
                if isinstance(answer, bytes):
                    self._send_raw(answer, "application/octet-stream")
                else:
                    self._send(status, answer)
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            fake.authorizations.append(self.headers.get("Authorization") or "")
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                return
            if self.path.rstrip("/") in ("/v1/files", "/v1/batches") or self.path.endswith("/cancel"):
                status, answer = fake.batches.post(self.path, self.headers.get("Content-Type", ""), raw)
                if status is None:  # a reply lost on the way
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._send(status, answer)
                return
            body = json.loads(raw or b"{}")
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            if body.get("model") not in fake.models:
                self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})
                return
            with fake.lock:
                fault = fake.faults.pop(0) if fake.faults else None
                if fake.record:
                    fake.requests.append(body)
                    fake.wire.append((self.headers.items(), raw))
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                self._complete(body, fault)
            finally:
                with fake.lock:
                    fake.in_flight -= 1

        def _complete(self, body: dict, fault: str | None) -> None:
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
            if fault == "echo_key":
                detail = f"bad request from {self.headers.get('Authorization')} (key {API_KEY})"
                self._send(400, {"error": {"message": detail}})
                return
            if fault in BAD_REPLIES or fault == "usage_null":
                self._send_raw(BAD_REPLIES.get(fault, NO_USAGE_REPLY))
                return
            if fault in SLOW_REPLIES:
                self._misbehave(fault)
                return
            if fault in BROKEN_REPLIES:
                self._broken(fault)
                return
            self._send(200, completion_body(fake, body))

        def _broken(self, fault: str) -> None:
            if fault == "echo_key_answer":
                self._send(200, _completion(f"the key is {API_KEY}", _GOOD_USAGE))
                return
            if fault == "echo_key_masked":  # as OpenAI's 401 says it: the key but its last characters
                self._send(400, {"error": {"message": f"Incorrect API key provided: {API_KEY[:-2]}**"}})
                return
            if fault == "echo_key_encoded":
                self._send(200, _completion(f"key=%{ord(API_KEY[0]):x}{API_KEY[1:]}", _GOOD_USAGE))
                return
            if fault == "echo_key_plain":  # the key runs across the 40th character, where a quote of it is cut
                self._send_raw(f"error: the key you sent was {API_KEY}, which is wrong".encode(), "text/plain")
                return
            self.close_connection = True
            status = 307 if fault == "redirect" else 503 if fault == "error_latin1_header" else 200
            self.send_response(500 if fault.startswith(("error_long", "error_bomb", "error_cut")) else status)
            self.send_header("Content-Type", "application/json")
            try:
                if fault == "error_latin1_header":  # bytes a header may carry that are not ASCII
                    raw = json.dumps({"error": {"message": "upstream busy"}}).encode()
                    self.send_header("X-Upstream", "caf\xe9")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                elif fault == "redirect":
                    self.send_header("Location", REDIRECT_TO)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif fault in ("cut_off", "error_cut_off"):
                    raw = json.dumps(_completion("Paris", _GOOD_USAGE)).encode()
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw[:30])
                elif fault in ("bad_gzip", "error_bomb"):
                    raw = b"not gzip at all" if fault == "bad_gzip" else _bomb()
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                else:  # 300 MB of error without a length: a client reading it whole holds it all
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "')
                    for _ in range(3200):
                        if fake.stop.is_set():
                            return
                        self.wfile.write(b"no " * 32768)
            except OSError:
                pass  # the client gave up, as it should

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        fake.stop.set()
        server.shutdown()
        server.server_close()
