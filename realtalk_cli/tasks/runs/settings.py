"""A run's settings checked before any request: option types as the options class declares them, counts and
timeouts in range, and prices for every model that --max-cost must bound.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any

from realtalk_cli.errors import RealtalkError
from realtalk_cli.llm.providers import Endpoint, Prices


def _accepts(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint in (int, float):  # TOML has no bool-as-number; 2 is a fine float
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is Path:
        return isinstance(value, (str, Path))
    return isinstance(value, origin or hint)


def _described(hint: Any) -> str:
    """A type as a user reads it: `one of full, events, ...` for a choice, `a number or none`, `a list of ...`."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(a) for a in typing.get_args(hint))
    names = {int: "a whole number", float: "a number", str: "a text", bool: "true or false", Path: "a path"}
    if hint is type(None):
        return "none"
    return names.get(hint, f"a {getattr(origin or hint, '__name__', hint)}")


def check_settings(settings: dict, options_class: type, source: str) -> None:
    """Types as the options declare them (`chats = "path"` is not a list) and counts of at least 1."""
    hints = typing.get_type_hints(options_class)
    for key, value in settings.items():
        if key == "chats":
            ok = isinstance(value, list) and all(isinstance(v, (str, Path)) for v in value)
            if not ok:
                raise RealtalkError(f'{source}: chats must be a list of paths, e.g. chats = ["a.json"]')
        elif key in hints and not _accepts(hints[key], value):
            raise RealtalkError(f"{source}: {key} = {value!r} is not {_described(hints[key])}")
        elif isinstance(value, int) and abs(value) >= 2**53:  # JSON (run.json, reports) cannot hold it exactly
            raise RealtalkError(f"{source}: {key} = {value} is too large")
    for key in ("top_k", "concurrency", "limit", "max_context_tokens", "sessions"):
        if isinstance(settings.get(key), int) and settings[key] < 1:
            raise RealtalkError(f"{source}: {key} must be at least 1, not {settings[key]}")
    for key in ("timeout", "memory_timeout"):
        if isinstance(settings.get(key), (int, float)) and not 0 < settings[key] < math.inf:  # NaN too
            raise RealtalkError(f"{source}: {key} must be a number of seconds more than 0")
    for key in ("max_cost", "price_in", "price_out"):
        if isinstance(settings.get(key), (int, float)) and not math.isfinite(settings[key]):
            raise RealtalkError(f"{source}: {key} must be a finite number")


def load_prices(models: list[Endpoint], max_cost: float | None, price_in: float | None, price_out: float | None):
    """prices.toml plus --price-in/--price-out (for the first, answering model); with --max-cost every model
    that will be called must have a price, checked before any request."""
    prices = Prices.load()
    if price_in is not None or price_out is not None:
        if (price_in or 0) < 0 or (price_out or 0) < 0:
            raise RealtalkError("--price-in/--price-out must not be negative")
        prices.table[models[0].model] = {"input": price_in or 0.0, "output": price_out or 0.0}
    if max_cost is not None:
        if max_cost <= 0:
            raise RealtalkError("--max-cost must be more than 0")
        for n, m in enumerate(models):
            if not m.offline and not prices.known(m.model):
                # --price-in/--price-out price the answering model only: for a judge or labeller, prices.toml
                way = (
                    "pass --price-in/--price-out"
                    if n == 0
                    else f"run with a priced model (the flags price {models[0].label})"
                )
                raise RealtalkError(f"no price for {m.label}; add it to prices.toml or {way}")
    return prices
