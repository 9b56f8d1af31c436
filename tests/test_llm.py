from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.cache import ResponseCache
from realtalk_cli.llm.client import FatalModelError, LLMClient
from realtalk_cli.llm.providers import Prices, resolve_model
from realtalk_cli.llm.tokens import count_tokens
from realtalk_cli.tasks import baselines  # noqa: F401  (registers offline:bm25)

from .llm_server import API_KEY, FakeLLM, serve_llm

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
    client = LLMClient(resolve_model("offline:bm25"))
    prompt = "Ana: I adopted a dog called Miso\nBen: I ran a race in Lisbon\nQuestion: Where did Ben run a race?"
    c = complete(client, [{"role": "user", "content": prompt}])
    assert c.text == "I ran a race in Lisbon"


def test_token_counts_are_exact_for_gpt4o_and_flagged_estimates_otherwise():
    assert count_tokens("Hello world", "gpt-4o") == (2, True)
    assert count_tokens("Hello world", "some-local-model") == (2, False)
