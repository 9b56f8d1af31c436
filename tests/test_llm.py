from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.cache import ResponseCache
from realtalk_cli.llm.client import FatalModelError, LLMClient
from realtalk_cli.llm.providers import Prices, resolve_model
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks.probe import baselines  # noqa: F401  (registers offline:bm25)

from .llm_server import API_KEY, BAD_REPLIES, SLOW_REPLIES, FakeLLM, serve_llm

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", API_KEY)


def make_client(url: str, tmp_path: Path | None = None, **kw) -> LLMClient:
    endpoint = resolve_model("gpt-4o-mini", base_url=url, api_key_env="TEST_LLM_KEY")
    cache = ResponseCache(tmp_path / "cache.sqlite") if tmp_path else None
    return LLMClient(endpoint, cache=cache, backoff_s=0.01, **kw)


def complete(client: LLMClient, messages=MESSAGES):
    async def go():
        try:
            return await client.complete(messages)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_requests_on_the_wire_are_the_sdks_own(tmp_path: Path, key):
    """_post encodes the body itself and sends it through the SDK's generic post: headers and body must be those
    chat.completions.create sends (same client), for text JSON escapes and every parameter complete() sets. The body's
    bytes are the SDK's own up to the order of its keys (the SDK's order changed between its versions)."""
    tricky = 'quote " backslash \\ nul \x00 unit \x1f del \x7f line \u2028 é 😀 \n\t'
    messages = [{"role": "system", "content": tricky}, {"role": "user", "content": "Reply in JSON."}]
    fake = FakeLLM()
    with serve_llm(fake) as url:
        client = make_client(url)

        async def both():
            try:
                settings = [(0.0, 256, None), (0.7, None, {"type": "json_object"})]
                for temperature, max_tokens, response_format in settings:
                    c = await client.complete(messages, temperature, max_tokens, response_format)
                    assert c.error is None
                    params = {"max_tokens": max_tokens, "response_format": response_format, "temperature": temperature}
                    given = {k: v for k, v in params.items() if v is not None}
                    create = client._sdk.chat.completions.with_streaming_response.create
                    async with create(model="gpt-4o-mini", messages=messages, **given) as response:
                        await response.read()
            finally:
                await client.aclose()

        asyncio.run(both())
    assert len(fake.wire) == 4
    for (ours_headers, ours), (sdk_headers, sdk) in [fake.wire[0:2], fake.wire[2:4]]:
        assert json.loads(ours) == json.loads(sdk) and sorted(ours) == sorted(sdk)  # same escapes, same numbers
        assert ours_headers == sdk_headers


def test_a_prompt_no_request_can_carry_is_that_items_error_and_nothing_is_sent(key):
    fake = FakeLLM()
    with serve_llm(fake) as url:
        c = complete(make_client(url), [{"role": "user", "content": "half an emoji \ud83d"}])
    assert c.text == "" and c.error.startswith("not sent: the prompt holds text a request cannot carry")
    assert fake.requests == []


def test_resolve_model_specs(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    default = resolve_model("gpt-4o")
    assert default.provider == "openai" and default.base_url.startswith("https://")
    ollama = resolve_model("ollama:llama3:8b")
    assert (ollama.provider, ollama.model, ollama.api_key_env) == ("ollama", "llama3:8b", "")
    assert resolve_model("ft:gpt-4o-mini:org::abc").model == "ft:gpt-4o-mini:org::abc"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert resolve_model("gpt-4o").base_url == "http://127.0.0.1:1/v1"
    with pytest.raises(RealtalkError, match="unknown offline model 'offline:nope'"):
        resolve_model("offline:nope")


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(RealtalkError, match="set the API key in the environment variable OPENROUTER_API_KEY"):
        LLMClient(resolve_model("openrouter:meta/llama"))


def test_completion_usage_and_cache(tmp_path: Path, key):
    fake = FakeLLM(reply=lambda body: "Paris")
    with serve_llm(fake) as url:
        first = complete(make_client(url, tmp_path, prices=Prices({"gpt-4o-mini": {"input": 1.0, "output": 2.0}})))
        second = complete(make_client(url, tmp_path))
    assert first.text == "Paris" and first.error is None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (6, 1)
    assert first.usage.cost_usd == pytest.approx((6 * 1.0 + 1 * 2.0) / 1e6)
    assert second.usage.cached and second.text == "Paris"
    assert len(fake.requests) == 1
    assert API_KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()


def test_transient_faults_are_retried(key):
    fake = FakeLLM(reply=lambda body: "Paris", faults=["429", "500", "drop"])
    with serve_llm(fake) as url:
        c = complete(make_client(url))
    assert c.text == "Paris" and c.usage.retries == 3


def test_retries_run_out_into_an_error_not_an_exception(key):
    fake = FakeLLM(faults=["500"] * 3)
    with serve_llm(fake) as url:
        c = complete(make_client(url, max_attempts=3))
    assert c.text == "" and c.error == "HTTP 500: server error (after 3 attempts)"


def test_unknown_model_and_bad_key_are_fatal(monkeypatch, key):
    with serve_llm(FakeLLM(models=("other",))) as url:
        with pytest.raises(FatalModelError, match="unknown model 'gpt-4o-mini'"):
            complete(make_client(url))
        monkeypatch.setenv("TEST_LLM_KEY", "wrong")
        with pytest.raises(FatalModelError, match="refused the API key"):
            complete(make_client(url))


def test_offline_bm25_answers_with_the_best_matching_line():
    client = LLMClient(resolve_model("offline:bm25-line"))
    prompt = "Ana: I adopted a dog called Miso\nBen: I ran a race in Lisbon\nQuestion: Where did Ben run a race?"
    c = complete(client, [{"role": "user", "content": prompt}])
    assert c.text == "I ran a race in Lisbon"


def test_token_counts_are_exact_for_gpt4o_and_flagged_estimates_otherwise():
    assert count_tokens("Hello world", "gpt-4o") == (2, True)
    assert count_tokens("Hello world", "some-local-model") == (2, False)


@pytest.mark.parametrize("fault", sorted(BAD_REPLIES) + list(SLOW_REPLIES))
def test_a_bad_reply_is_an_error_never_cached_and_asked_again(fault, tmp_path: Path, key):
    fake = FakeLLM(reply=lambda body: "Paris", faults=[fault] * 3)
    with serve_llm(fake) as url:
        bad = complete(make_client(url, tmp_path, timeout_s=1.5, max_attempts=2))
        asked = len(fake.requests)
        fake.faults.clear()
        good = complete(make_client(url, tmp_path))
    assert bad.text == "" and bad.error and bad.usage.cost_usd == 0
    assert asked in (1, 2)  # retried once where a retry makes sense
    assert good.error is None and good.text == "Paris" and not good.usage.cached
    assert len(fake.requests) == asked + 1


def test_a_reply_without_usage_is_counted_and_flagged_as_estimated(key):
    fake = FakeLLM(reply=lambda body: "Paris", faults=[])
    with serve_llm(fake) as url:
        fake.faults.append("usage_null")
        c = complete(make_client(url))
    assert c.error is None and c.usage.estimated and c.usage.prompt_tokens > 0


def test_the_whole_request_has_a_deadline_even_while_bytes_keep_coming(key):
    fake = FakeLLM(faults=["trickle"])
    with serve_llm(fake) as url:
        started = time.perf_counter()
        c = complete(make_client(url, timeout_s=1.0, max_attempts=1))
    assert time.perf_counter() - started < 5
    assert c.error == "no complete reply within --timeout 1 s (after 1 attempts)"


def test_server_error_text_is_stored_without_the_key(key):
    fake = FakeLLM(faults=["echo_key"])
    with serve_llm(fake) as url:
        c = complete(make_client(url))
    assert c.error.startswith("HTTP 400") and "[redacted]" in c.error
    assert API_KEY not in c.error and "Bearer sk" not in c.error


def test_a_cache_that_fails_mid_run_warns_and_the_run_goes_on(tmp_path: Path, key, capsys):
    import sqlite3

    class ReadOnly:
        def __init__(self, db):
            self.db = db

        def execute(self, sql, *args):
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("attempt to write a readonly database")
            return self.db.execute(sql, *args)

        def executemany(self, sql, *args):
            raise sqlite3.OperationalError("attempt to write a readonly database")

        def close(self):
            self.db.close()

    fake = FakeLLM(reply=lambda body: "Paris")
    with serve_llm(fake) as url:
        client = make_client(url, tmp_path)
        client.cache._db = ReadOnly(client.cache._db)
        first = complete(client)
        client.cache.close()  # the writer thread has tried to store the reply by now
        second = complete(make_client(url, tmp_path))
    assert first.text == "Paris" and first.error is None
    assert "response cache" in capsys.readouterr().err and client.cache._db is None
    assert not second.usage.cached and len(fake.requests) == 2


@pytest.mark.parametrize("fault", ["cut_off", "bad_gzip"])
def test_a_reply_broken_while_read_is_that_items_error_not_a_crash(key, fault):
    """Both raised the HTTP library's own error out of the run (exit 1 and a traceback)."""
    fake = FakeLLM(faults=[fault] * 5)
    with serve_llm(fake) as url:
        c = complete(make_client(url))
    assert c.text == "" and c.error.startswith("bad reply: the reply broke off"), c.error
    assert len(fake.requests) == 2  # a bad reply is asked once more


def test_a_redirect_is_not_followed_and_stops_the_run_with_one_line(key):
    """Followed, a 301 turned the POST into a GET to another host whose answer was taken (and cached); a 307 sent
    the request on. The address it names is in the message, to give as --base-url."""
    fake = FakeLLM(faults=["redirect"])
    with serve_llm(fake) as url:
        with pytest.raises(FatalModelError, match=r"answers with a redirect \(HTTP 307 to http://127.0.0.1:9/v1/"):
            complete(make_client(url))
    assert len(fake.requests) == 1


@pytest.mark.parametrize("fault", ["error_long", "error_bomb"])
def test_an_error_reply_is_read_up_to_the_cap(tmp_path: Path, key, fault):
    """The SDK reads an error body whole: an endless one grew until --timeout; a 200 KB gzip body took 200 MB.
    In a process of its own, to see its peak memory."""
    script = tmp_path / "one.py"
    script.write_text(
        "import asyncio, resource, sys, time\n"
        "from realtalk_cli.llm.client import LLMClient\n"
        "from realtalk_cli.llm.providers import resolve_model\n"
        "endpoint = resolve_model('gpt-4o-mini', base_url=sys.argv[1], api_key_env='TEST_LLM_KEY')\n"
        "client = LLMClient(endpoint, backoff_s=0.01, timeout_s=10)\n"
        "async def go():\n"
        "    try:\n"
        "        return await client.complete([{'role': 'user', 'content': 'hi'}])\n"
        "    finally:\n"
        "        await client.aclose()\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
        "before, start = peak(), time.monotonic()\n"
        "c = asyncio.run(go())\n"
        "print(c.error, '|', time.monotonic() - start, peak() - before)\n"
    )
    fake = FakeLLM(faults=[fault] * 5)
    with serve_llm(fake) as url:
        root = Path(__file__).parent.parent
        env = {**os.environ, "PYTHONPATH": str(root)}
        done = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, env=env, cwd=root)
    error, _, numbers = done.stdout.rpartition("|")
    seconds, growth_mb = numbers.split()
    assert error.startswith("HTTP 500") and "after 5 attempts" in error, done.stdout + done.stderr
    assert float(seconds) < 9 and int(growth_mb) < 150, done.stdout  # the first request's peak, not 200 MB


@pytest.mark.parametrize("fault", ["echo_key_plain", "echo_key_answer", "echo_key_masked", "echo_key_encoded"])
def test_the_key_quoted_by_a_reply_is_taken_out_before_anything_is_cut_short(key, fault):
    """Whole, cut where a message is shortened, masked at its end (as OpenAI's 401 says it) or %-encoded: no 8
    characters of it in a row are left."""
    fake = FakeLLM(faults=[fault] * 2)
    with serve_llm(fake) as url:
        c = complete(make_client(url))
    said = c.text + (c.error or "")
    assert not any(API_KEY[i : i + 8] in said for i in range(len(API_KEY) - 7)), said
    assert "[redacted]" in said


@pytest.mark.parametrize(
    "fault, said", [("error_cut_off", "HTTP 500"), ("error_latin1_header", "HTTP 503: upstream busy")]
)
def test_an_error_reply_broken_or_odd_is_still_that_status(key, fault, said):
    """An error body cut off was taken for an endpoint never reached ("cannot reach", exit 2); a header byte that is
    not ASCII was a traceback."""
    fake = FakeLLM(faults=[fault] * 5)
    with serve_llm(fake) as url:
        c = complete(make_client(url))
    assert c.error.startswith(said) and "after 5 attempts" in c.error, c.error


@pytest.mark.parametrize("fault, status, sent", [("redirect", 307, 1), ("error_long", 500, 3)])
def test_the_batch_client_follows_no_redirect_and_caps_error_replies(key, fault, status, sent):
    """The synchronous client of the batch jobs: a redirect sent the batch file (every prompt) on to another host;
    an endless error body grew to 23 GB."""
    import openai

    fake = FakeLLM(faults=[fault] * 3)
    with serve_llm(fake) as url:
        sdk = make_client(url, timeout_s=10).batch_sdk()
        with pytest.raises(openai.APIStatusError) as raised:
            sdk.post("/chat/completions", cast_to=bytes, body={"model": "gpt-4o-mini", "messages": MESSAGES})
        sdk.close()
    assert raised.value.status_code == status and len(fake.requests) == sent  # a 500 retried twice by the SDK
    if status == 500:
        assert raised.value.body.endswith("[cut at 4194304 bytes]") and len(raised.value.body) < 4_200_000
