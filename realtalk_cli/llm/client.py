"""One provider-agnostic LLM client: the official `openai` SDK against any OpenAI-compatible endpoint.

It knows nothing of chats. It adds, around a single chat-completion call: a response cache, retries
with exponential backoff and jitter (honouring Retry-After), a concurrency limit (a Limiter that
several clients of one run can share, and a suite's limit per endpoint), and usage accounting (tokens,
prompt tokens the provider served from its prompt cache, latency, cost). Offline models (`offline:...`)
answer without network or key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.cache import CachedResponse, ResponseCache, cache_key
from realtalk_cli.llm.providers import Endpoint, Prices, local_models
from realtalk_cli.llm.replies import BadReply, Reply, parse_reply, redact
from realtalk_cli.llm.scheduler import ANSWER, Limiter, endpoint_gate
from realtalk_cli.llm.tokens import count_message_tokens, count_tokens

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
UNREACHED_ATTEMPTS = 3
BAD_REPLY_ATTEMPTS = 2  # a malformed 200 is asked once more (a proxy hiccup), not the full backoff
MAX_REPLY_BYTES = 4 * 2**20
JSON_BODY = {"Content-Type": "application/json"}
_NO_GATE = contextlib.nullcontext()  # no endpoint limit beyond the run's own (outside a suite)


def openai_sdk():
    """The `openai` module, imported on first use: it costs a third of a second, which commands that never call
    a model (and offline models) should not pay."""
    # The SDK builds ~650 pydantic classes; the collector's passes during that find nothing to free and cost
    # about a tenth of the import. What is alive once it is imported (modules, classes) is frozen: the passes
    # while the SDK's HTTP client is built and the first requests go out skip it (~40 ms sooner to the first
    # request); run_jobs unfreezes everything as it ends, so nothing stays uncollectable past a run.
    # `import` (not sys.modules) waits while another thread is importing it.
    pause = "openai" not in sys.modules and gc.isenabled()
    if pause:
        gc.disable()
    try:
        import openai
    finally:
        if pause:
            gc.freeze()
            gc.enable()
    return openai


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, served from the provider's prompt cache (usage details)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False  # answered from our response cache: nothing sent, nothing billed
    retries: int = 0
    estimated: bool = False  # token counts are estimates, not the API's
    cached_tokens_ignored: object = None  # a cached-token count the reply gave that cannot be true (billed in full)

    def as_row(self) -> dict:
        """The fields every predictions line carries (and two flags when they apply)."""
        flags = {"tokens_estimated": True} if self.estimated else {}
        if self.cached_tokens_ignored is not None:
            flags["cached_tokens_ignored"] = self.cached_tokens_ignored
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
            "latency_s": round(self.latency_s, 4),
            "retries": self.retries,
            "cached": self.cached,
        } | flags


@dataclass
class Completion:
    text: str
    usage: Usage
    error: str | None = None


@dataclass
class Totals:
    requests: int = 0
    cached: int = 0
    errors: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    estimated: int = 0  # requests whose reply came without usage: tokens and cost estimated with our tokenizer

    def add(self, c: Completion) -> None:
        self.requests += 1
        self.cached += c.usage.cached
        self.errors += c.error is not None
        self.retries += c.usage.retries
        self.prompt_tokens += c.usage.prompt_tokens
        self.completion_tokens += c.usage.completion_tokens
        self.cached_tokens += c.usage.cached_tokens
        self.cost_usd += c.usage.cost_usd
        self.estimated += c.usage.estimated

    def plus(self, other: Totals) -> Totals:
        """The sum of two totals, field by field."""
        return Totals(**{f: getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__})


class FatalModelError(RealtalkError):
    """The endpoint refuses every request (bad key, unknown model): stop the run."""


class NotSent(Exception):
    """The client was halted (the run stopped, e.g. at --max-cost) before this request was sent."""


class LLMClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        concurrency: int = 8,
        cache: ResponseCache | None = None,
        max_attempts: int = 5,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
        prices: Prices | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        limiter: Limiter | None = None,
        priority: int = ANSWER,
        share_connections_with: LLMClient | None = None,
    ):
        self.endpoint = endpoint
        self.cache = cache
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.prices = prices or Prices()
        self.totals = Totals()
        self.limiter = limiter or Limiter(concurrency)
        self.gate = endpoint_gate(endpoint.base_url)  # the endpoint's limit shared by a suite's runs, if any
        self.priority = priority
        self.on_completion: Callable[[Completion], None] | None = None  # e.g. the run folder's spending record
        self.halted = False  # set by halt(): requests not yet sent raise NotSent
        self._sdk = None
        self._timeout_s = timeout_s
        self.max_reply_bytes = max_reply_bytes
        self._api_key = ""
        self._reached = False  # an endpoint never reached is a configuration error, not a transient fault
        self._owns_sdk = True
        other = share_connections_with
        if (
            other is not None
            and other._sdk is not None
            and (other.endpoint.base_url, other.endpoint.api_key_env)
            == (
                endpoint.base_url,
                endpoint.api_key_env,
            )
        ):
            # One connection pool for both models of a run (answer and judge at the same endpoint).
            self._sdk, self._owns_sdk, self._api_key = other._sdk, False, other._api_key
        elif not endpoint.offline:
            self._sdk = self._make_sdk()

    def _make_sdk(self):
        AsyncOpenAI = openai_sdk().AsyncOpenAI
        key = require_key(self.endpoint)
        if not self.endpoint.base_url:
            raise RealtalkError(f"{self.endpoint.label}: no base URL for provider {self.endpoint.provider!r}")
        self._api_key = key
        # Retries are ours (visible, counted); the SDK's own would hide them.
        return AsyncOpenAI(
            api_key=key,
            base_url=self.endpoint.base_url,
            max_retries=0,
            timeout=self._timeout_s,
            http_client=_http_client_class()(follow_redirects=False, reply_cap=self.max_reply_bytes),
        )

    async def complete(
        self,
        messages: list[dict],
        temperature: float | None = 0.0,
        max_tokens: int | None = 256,
        response_format: dict | None = None,
        accept: Callable[[str], bool] | None = None,
        reply_attempts: int = BAD_REPLY_ATTEMPTS,
    ) -> Completion:
        """One chat completion; a parameter given as None is left out of the request (the provider's default).

        `accept` is the caller's check of the text (a judge's verdict holds a score, labels parse): a reply it
        rejects is a bad reply like any other (never cached, an error in the end), billed like any reply.
        A bad reply is asked again until `reply_attempts` replies came back (transport faults retry apart)."""
        # in chat.completions.create's order: the body encoded below is the one the SDK would send
        params = {"max_tokens": max_tokens, "response_format": response_format, "temperature": temperature}
        params = {k: v for k, v in params.items() if v is not None}
        if self.halted:
            raise NotSent
        try:  # encoded once for every attempt; text JSON cannot carry (a lone surrogate) is that item's error
            body = orjson.dumps({"model": self.endpoint.model, "messages": messages, **params})
        except orjson.JSONEncodeError as e:
            return Completion("", Usage(), f"not sent: the prompt holds text a request cannot carry ({e})")
        if (hit := self.cached(messages, params)) is not None and (accept is None or accept(hit.text)):
            self.count(hit)
            return hit
        async with self.limiter.slot(self.priority):
            if self.halted:
                raise NotSent
            async with _NO_GATE if self.gate is None else self.gate.slot():
                if self.halted:  # halted while waiting for the endpoint (a suite's max_cost reached elsewhere)
                    raise NotSent
                c = await self._call(messages, body, accept, reply_attempts)
                # counted before the slot is let go: the next request is sent only once this one is recorded
                self.remember(messages, params, c)
                self.count(c)
        return c

    def count(self, c: Completion) -> None:
        """A finished request (sent, or answered by the cache) into the totals and the spending record."""
        self.totals.add(c)
        if self.on_completion is not None:
            self.on_completion(c)

    def halt(self) -> None:
        """Send nothing more: requests in flight finish (their replies are billed and recorded), the others raise
        NotSent."""
        self.halted = True

    def _cache_key(self, messages: list[dict], params: dict) -> str:
        return cache_key(self.endpoint.base_url or self.endpoint.label, self.endpoint.model, messages, params)

    def cached(self, messages: list[dict], params: dict) -> Completion | None:
        """The response cache's answer to this request, if any (nothing sent, nothing billed)."""
        if self.cache is None or (hit := self.cache.get(self._cache_key(messages, params))) is None:
            return None
        return Completion(hit.text, Usage(hit.prompt_tokens, hit.completion_tokens, cached=True))

    def remember(self, messages: list[dict], params: dict, c: Completion) -> None:
        """Put a good answer in the response cache (an error never goes in)."""
        if c.error is None and self.cache is not None:
            entry = CachedResponse(c.text, c.usage.prompt_tokens, c.usage.completion_tokens)
            self.cache.put(self._cache_key(messages, params), entry)

    def batch_sdk(self):
        """A synchronous SDK client on the same endpoint and key, for the files and batches endpoints."""
        OpenAI = openai_sdk().OpenAI
        if self._sdk is None:
            raise RealtalkError(f"{self.endpoint.label}: batch jobs need an API endpoint, not an offline model")
        return OpenAI(
            api_key=self._api_key,
            base_url=self.endpoint.base_url,
            max_retries=2,
            timeout=self._timeout_s,
            http_client=_http_client_class(sync=True)(follow_redirects=False, reply_cap=self.max_reply_bytes),
        )

    async def _call(
        self,
        messages: list[dict],
        body: bytes,
        accept: Callable[[str], bool] | None = None,
        reply_attempts: int = BAD_REPLY_ATTEMPTS,
    ) -> Completion:
        if self.endpoint.offline:
            text = local_models()[self.endpoint.model](messages)
            if accept is not None and not accept(text):
                return Completion("", Usage(), f"bad reply: no usable answer in the reply ({text[:60]!r})")
            return Completion(text, Usage())
        openai = openai_sdk()
        usage = Usage()
        start = time.perf_counter()
        last_error = ""
        bad_replies = 0
        for attempt in range(self.max_attempts):
            wait = None
            try:
                async with asyncio.timeout(self._timeout_s):
                    raw = await self._post(body)
                reply = parse_reply(raw, [self._api_key])
                if accept is not None and not accept(reply.text):
                    self.bill(usage, reply, messages)  # unusable to the caller, billed all the same
                    raise BadReply(f"no usable answer in the reply ({reply.text[:60]!r})")
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise FatalModelError(
                    f"{self.endpoint.label}: the endpoint refused the API key ({e.status_code})"
                ) from None
            except openai.NotFoundError:
                raise FatalModelError(
                    f"{self.endpoint.label}: unknown model {self.endpoint.model!r} at {self.endpoint.base_url}"
                ) from None
            except (TimeoutError, openai.APITimeoutError):
                self._reached = True
                last_error = f"no complete reply within --timeout {self._timeout_s:g} s"
            except openai.APIConnectionError as e:
                last_error = f"{type(e).__name__}: {self._redact(str(e))}"
                # Never reached at all: give up after a few seconds rather than the full backoff.
                if not self._reached and attempt + 1 >= min(self.max_attempts, UNREACHED_ATTEMPTS):
                    raise FatalModelError(
                        f"{self.endpoint.label}: cannot reach {self.endpoint.base_url} ({e})"
                    ) from None
            except openai.APIStatusError as e:
                self._reached = True
                if 300 <= e.status_code < 400:
                    target = self._redact(e.response.headers.get("location", ""))
                    raise FatalModelError(
                        f"{self.endpoint.label}: {self.endpoint.base_url} answers with a redirect (HTTP "
                        f"{e.status_code}{' to ' + target if target else ''}); realtalk follows none (the request "
                        "and its key would go on to another address): give --base-url the address it points to"
                    ) from None
                # redacted in a window past what is shown (a key across the cut is whole in it), not a 4 MB body
                shown = _status_message(e)[: 1000 + len(self._api_key)]
                message = f"HTTP {e.status_code}: {_short(self._redact(shown))}"
                if e.status_code not in RETRYABLE_STATUS:
                    return Completion("", usage, message)
                last_error, wait = message, _retry_after(e.response)
            except BadReply as e:
                self._reached = True
                last_error = f"bad reply: {self._redact(str(e))}"
                bad_replies += 1
                if not e.retry or bad_replies >= reply_attempts:
                    usage.latency_s = time.perf_counter() - start
                    return Completion("", usage, last_error)
            else:
                self._reached = True
                usage.latency_s = time.perf_counter() - start
                self.bill(usage, reply, messages)
                return Completion(reply.text, usage)
            if attempt + 1 < self.max_attempts:
                usage.retries += 1
                delay = wait if wait is not None else self.backoff_s * 2**attempt * (0.5 + random.random())
                await asyncio.sleep(min(delay, 60.0))
        usage.latency_s = time.perf_counter() - start
        return Completion("", usage, f"{last_error} (after {usage.retries + 1} attempts)")

    def bill(self, usage: Usage, reply: Reply, messages: list[dict], batch: bool = False) -> None:
        """Add a reply's token counts and cost to `usage` (every billed reply of a request: a re-asked one too); a
        reply without usage is counted with our tokenizer, flagged as estimated."""
        if reply.prompt_tokens is not None:
            prompt, completion, cached = reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens
            if reply.cached_tokens_ignored is not None:
                usage.cached_tokens_ignored = reply.cached_tokens_ignored
        else:
            prompt, completion, cached = (
                count_message_tokens(messages, self.endpoint.model)[0],
                count_tokens(reply.text, self.endpoint.model)[0],
                0,
            )
            usage.estimated = True
        usage.prompt_tokens += prompt
        usage.completion_tokens += completion
        usage.cached_tokens += cached
        usage.cost_usd += self.prices.cost(self.endpoint.model, prompt, completion, cached, batch=batch)

    async def _post(self, body: bytes) -> bytes:
        """The raw body of one chat-completion reply, read up to `max_reply_bytes` (more is a BadReply).

        The request goes through the SDK's generic `post` with the body complete() encoded: on the wire the headers
        and JSON of `chat.completions.with_streaming_response.create`, text escaped alike (tests/test_llm.py compares
        them; orjson spells some floats otherwise, 1e-05 as 0.00001, the same number), without the SDK's
        per-request walk of the messages against its types and its stdlib JSON encoding (~1 ms of CPU per request
        of a long chat, a quarter of the client's work per request)."""
        import httpx2  # the SDK's HTTP library, imported with it

        response = await self._sdk.post(
            "/chat/completions",
            cast_to=bytes,
            content=body,
            # what with_streaming_response sends: the SDK leaves the body unread, read here up to the cap
            options={"headers": {**JSON_BODY, "X-Stainless-Raw-Response": "stream"}, "security": {"bearer_auth": True}},
        )
        try:
            declared = response.http_response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_reply_bytes:
                cap = self.max_reply_bytes
                raise BadReply(f"reply of {int(declared)} bytes exceeds the {cap}-byte cap", retry=False)
            reply = CappedBody(self.max_reply_bytes)
            async for chunk in response.iter_bytes():
                if not reply.add(chunk):
                    break
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except (httpx2.HTTPError, httpx2.StreamError) as e:  # cut off, a broken chunk or compression
            raise BadReply(f"the reply broke off ({type(e).__name__}: {e})") from None
        finally:
            await response.close()
        if not reply.whole:
            raise BadReply(f"reply exceeds the {self.max_reply_bytes}-byte cap", retry=False)
        return reply.data()

    def _redact(self, text: str) -> str:
        return redact(text, [self._api_key])

    async def aclose(self) -> None:
        if self._sdk is not None and self._owns_sdk:
            await self._sdk.close()


def require_key(endpoint: Endpoint) -> str:
    """The endpoint's API key from the environment ("not-needed" when it takes none); missing is exit 2."""
    if not endpoint.api_key_env or endpoint.offline:
        return "not-needed"
    key = os.environ.get(endpoint.api_key_env, "")
    if not key:
        raise RealtalkError(f"{endpoint.label}: set the API key in the environment variable {endpoint.api_key_env}")
    return key


class CappedBody:
    """A body's chunks kept up to `cap` bytes: `add` says whether to read on."""

    def __init__(self, cap: int) -> None:
        self.cap, self.size, self.chunks, self.whole = cap, 0, [], True

    def add(self, chunk: bytes) -> bool:
        self.size += len(chunk)
        if self.size > self.cap:
            self.chunks.append(chunk[: len(chunk) - (self.size - self.cap)])
            self.whole = False
            return False
        self.chunks.append(chunk)
        return True

    def data(self, note: str = "") -> bytes:
        return b"".join(self.chunks) + note.encode()


@functools.cache
def _http_client_class(sync: bool = False):
    """The SDK's HTTP client (its defaults, built once the SDK is imported) with a reply that is not a success read
    up to a cap: the SDK reads an error reply whole, so an endless or decompressing-to-gigabytes error body would
    take all memory. Made with follow_redirects=False: realtalk follows no redirect (a POST would turn into a GET
    elsewhere, or go on with its prompts to another host)."""
    import httpx2

    def error_as_read(response, body: CappedBody, broke: BaseException | None, request):
        """The error reply as the SDK will read it: its body up to the cap, decoded, with what cut it short."""
        raw_headers = [(k, v) for k, v in response.headers.raw if k.lower().decode("latin-1") not in _BODY_FRAMING]
        note = "" if body.whole else f" [cut at {body.cap} bytes]"
        if broke is not None:
            note = f" [the body broke off: {type(broke).__name__}]"
        return httpx2.Response(response.status_code, headers=raw_headers, content=body.data(note), request=request)

    broke_off = (httpx2.HTTPError, httpx2.StreamError)
    sdk = openai_sdk()
    if sync:

        class SyncRepliesCapped(sdk.DefaultHttpxClient):
            def __init__(self, *, reply_cap: int, **kwargs) -> None:
                super().__init__(**kwargs)
                self.reply_cap = reply_cap

            def send(self, request, *, stream: bool = False, **kwargs):
                response = super().send(request, stream=True, **kwargs)
                if response.is_success:
                    if not stream:
                        response.read()
                    return response
                body, broke = CappedBody(self.reply_cap), None
                try:
                    for chunk in response.iter_bytes():
                        if not body.add(chunk):
                            break
                except httpx2.TimeoutException:
                    raise
                except broke_off as e:
                    broke = e
                finally:
                    response.close()
                return error_as_read(response, body, broke, request)

        return SyncRepliesCapped

    class RepliesCapped(sdk.DefaultAsyncHttpxClient):
        def __init__(self, *, reply_cap: int, **kwargs) -> None:
            super().__init__(**kwargs)
            self.reply_cap = reply_cap

        async def send(self, request, *, stream: bool = False, **kwargs):
            response = await super().send(request, stream=True, **kwargs)
            if response.is_success:
                if not stream:
                    await response.aread()
                return response
            body, broke = CappedBody(self.reply_cap), None
            try:
                async for chunk in response.aiter_bytes():
                    if not body.add(chunk):
                        break
            except httpx2.TimeoutException:
                raise
            except broke_off as e:
                broke = e
            finally:
                await response.aclose()
            return error_as_read(response, body, broke, request)

    return RepliesCapped


_BODY_FRAMING = {"content-length", "content-encoding", "transfer-encoding"}


def _status_message(e) -> str:
    """The endpoint's own error message where its body has one (the SDK words it differently across versions):
    `{"error": {"message": ...}}`, `{"error": "..."}`, `{"detail": "..."}` or plain text."""
    body = e.body
    if isinstance(body, str) and body.strip():
        return body
    error = body.get("error", body) if isinstance(body, dict) else None
    message = error.get("message") or error.get("detail") if isinstance(error, dict) else error
    return message if isinstance(message, str) and message.strip() else e.message


def _short(text: str, limit: int = 200) -> str:
    text = re.sub(r"^Error code: \d+ - ", "", " ".join(str(text).split()))
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
