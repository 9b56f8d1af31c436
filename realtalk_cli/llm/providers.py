"""Where a model lives and what it costs: `provider:model` specs, providers.toml, prices.toml.

Offline models (`offline:NAME`) are plain functions from chat messages to a reply, registered by the
layer that defines them (the task baselines): this layer knows nothing of chats.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import read_toml

LOCAL_MODELS: dict[str, Callable[[list[dict]], str]] = {}
_LOCAL_MODEL_LOADERS: list[Callable[[], object]] = []
_LOADING = threading.Lock()


def register_local_model(name: str, answer: Callable[[list[dict]], str]) -> None:
    """Make `offline:NAME` a model: `answer(messages)` returns the reply text, no network, no key."""
    LOCAL_MODELS[name] = answer


def register_local_model_loader(load: Callable[[], object]) -> None:
    """`load()` registers offline models the first time one is looked up: a run against an API does not import
    the modules that define them."""
    _LOCAL_MODEL_LOADERS.append(load)


def local_models() -> dict[str, Callable[[list[dict]], str]]:
    """Every offline model: `offline:NAME` -> its answer function (a suite's cells look them up from threads:
    none sees the table before every loader ran)."""
    with _LOADING:
        while _LOCAL_MODEL_LOADERS:
            _LOCAL_MODEL_LOADERS[0]()
            _LOCAL_MODEL_LOADERS.pop(0)
    return LOCAL_MODELS


def config_dir() -> Path:
    """User-edited configuration: $REALTALK_CONFIG_DIR, else the `configs/` shipped with the package."""
    override = os.environ.get("REALTALK_CONFIG_DIR")
    return Path(override) if override else Path(str(resources.files("realtalk_cli").joinpath("configs")))


def _load_toml(name: str) -> dict:
    return read_toml(config_dir() / name)


@dataclass(frozen=True)
class Endpoint:
    provider: str
    model: str
    base_url: str
    api_key_env: str  # "" when the endpoint needs no key

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def offline(self) -> bool:
        return self.provider == "offline"


def resolve_model(spec: str, base_url: str | None = None, api_key_env: str | None = None) -> Endpoint:
    """`provider:model`, a bare model name (OpenAI, or OPENAI_BASE_URL), or an offline model."""
    if spec.startswith("offline:"):
        name = spec.split(":", 1)[1]
        if name not in local_models():
            available = ", ".join(f"offline:{n}" for n in local_models())
            raise RealtalkError(f"unknown offline model {spec!r}; available: {available}")
        return Endpoint("offline", name, "", "")
    providers = _load_toml("providers.toml")
    prefix, _, rest = spec.partition(":")
    if rest and prefix in providers:
        provider, model = prefix, rest
    else:  # a bare name, or a colon that belongs to the model (e.g. fine-tuned "ft:gpt-4o-mini:...")
        provider, model = "openai", spec
    if not model:
        raise RealtalkError(f"--model {spec!r}: no model name")
    conf = providers.get(provider, {})
    url = base_url or (os.environ.get("OPENAI_BASE_URL") if provider == "openai" else None) or conf.get("base_url")
    key_env = api_key_env if api_key_env is not None else conf.get("api_key_env", "OPENAI_API_KEY")
    return Endpoint(provider, model, url, key_env)


def api_keys(key_envs: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The API keys in this environment: of the variables given (a run's --api-key-env) and of every provider in
    providers.toml. Text from elsewhere (a server's error, a plug-in's exception) never shows them."""
    try:
        providers = _load_toml("providers.toml")
    except RealtalkError:
        providers = {}
    names = {*key_envs, "OPENAI_API_KEY"}
    names |= {c.get("api_key_env") for c in providers.values() if isinstance(c, dict)}
    return [os.environ[n] for n in sorted(n for n in names if isinstance(n, str) and n) if os.environ.get(n)]


@dataclass
class Prices:
    table: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Prices:
        path = config_dir() / "prices.toml"
        table = _load_toml("prices.toml").get("models", {})
        for model, p in table.items() if isinstance(table, dict) else [("models", table)]:
            fields = p.items() if isinstance(p, dict) else [("price", p)]
            for name, value in fields:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10_000:
                    raise RealtalkError(
                        f"{path}: models.{model}.{name} = {value!r} is not a price in USD per 1M tokens"
                    )
        return cls(table)

    def price(self, model: str) -> dict[str, float] | None:
        """By exact name, else without a vendor prefix (`openai/gpt-4o-mini` through OpenRouter)."""
        return self.table.get(model) or self.table.get(model.rsplit("/", 1)[-1])

    def known(self, model: str) -> bool:
        return self.price(model) is not None

    def cost(
        self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, batch: bool = False
    ) -> float:
        """USD for one request. `cached_tokens` (part of prompt_tokens) are billed at `cached_input`, and a
        batch job at the `batch_*` columns; a missing column falls back to the full price."""
        p = self.price(model)
        if not p:
            return 0.0
        full_in, full_out = p.get("input", 0.0), p.get("output", 0.0)
        rate_in = p.get("batch_input", full_in) if batch else full_in
        rate_out = p.get("batch_output", full_out) if batch else full_out
        rate_cached = p.get("batch_cached_input" if batch else "cached_input", rate_in)
        cached = min(max(cached_tokens, 0), prompt_tokens)
        return ((prompt_tokens - cached) * rate_in + cached * rate_cached + completion_tokens * rate_out) / 1e6
