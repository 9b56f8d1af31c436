"""What a probe run is: its options (flags or a --config TOML file), checked once, and the run's identity
and manifest derived from them. The live run (run.py) and batch jobs (batch.py) share these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import RUN_FILE, read_regular, read_toml
from realtalk_cli.llm.providers import resolve_model
from realtalk_cli.llm.spending import USAGE_FILE
from realtalk_cli.tasks.memory.runner import RETRIEVER_CONTEXTS, MemoryRunner
from realtalk_cli.tasks.probe.prompts import ContextMode
from realtalk_cli.tasks.probe.protocol import ProbeProtocol
from realtalk_cli.tasks.probe.protocols import DEFAULT, PROTOCOLS, compat_mode
from realtalk_cli.tasks.runs.identity import manifest, run_identity
from realtalk_cli.tasks.runs.settings import check_settings


@dataclass
class ProbeOptions:
    model: str
    out: Path
    judge_model: str | None = None
    judge_protocol: str | None = None  # the judge alone (judges/): None is the --compat protocol's own
    context: ContextMode = "full"
    context_tokens: int = 2700  # with a retriever or memory: each question's whole prompt, in tokens
    top_k: int | None = None  # retrievers: at most this many windows
    memory: str | None = None  # --memory SPEC: a built-in name, module:Name or path/to/file.py:Name
    memory_options: dict[str, str] = field(default_factory=dict)
    memory_timeout: float = 600.0  # seconds for one call into the memory (ingest of a chat, recall of a question)
    embedder: str | None = None  # dense retrieval model: a local directory or a cached name
    concurrency: int = 8
    limit: int | None = None
    category: str | None = None  # only the questions of this category (number or name)
    skip_adversarial: bool = False
    max_context_tokens: int = 120_000
    max_cost: float | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    use_cache: bool = True
    compat: str | None = None  # a protocol of protocols/ by name ("paper", "paper-once"...); None: realtalk's own
    timeout: float = 120.0
    force: bool = False
    price_in: float | None = None
    price_out: float | None = None
    errata: Path | None = None  # corrected golds (data/errata.py); changes scores, never an answer


# memory: the --memory stores; usage.jsonl: what the folder spent, every invocation (llm/spending.py)
PROBE_FILES = ["predictions.jsonl", "report.json", "report.md", "memory", USAGE_FILE]


def load_run_config(path: Path) -> dict:
    """A probe run written down as TOML: `chats = [...]` plus any ProbeOptions field."""
    conf = read_toml(path)
    known = set(ProbeOptions.__dataclass_fields__) | {"chats", "fail_under"}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise RealtalkError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    if "fail_under" in conf and not isinstance(conf["fail_under"], (int, float)):
        raise RealtalkError(f"{path}: fail_under = {conf['fail_under']!r} is not a number")
    check_settings(conf, ProbeOptions, str(path))
    return conf


def probe_settings(config: Path | None, given: dict) -> tuple[list[Path], ProbeOptions, float | None]:
    """Options from the --config file, overridden by the flags given (None = not given)."""
    settings = load_run_config(config) if config else {}
    settings.update({k: v for k, v in given.items() if v is not None})
    check_settings(settings, ProbeOptions, "options")
    files = [Path(p) for p in settings.pop("chats", None) or []]
    fail_under = settings.pop("fail_under", None)
    if not files:
        raise RealtalkError("no chats given (as arguments or `chats = [...]` in --config)")
    for required in ("model", "out"):
        if not settings.get(required):
            raise RealtalkError(f"--{required} is required (or `{required} = ...` in --config)")
    contexts = ("full", "events", *RETRIEVER_CONTEXTS)
    if settings.get("context", "full") not in contexts:
        raise RealtalkError(f"--context {settings['context']!r}: choose {', '.join(contexts)}")
    settings["compat"] = compat_mode(settings.get("compat"))
    protocol = PROTOCOLS[settings["compat"] or DEFAULT]
    context = settings.get("context", "full")
    if not protocol.takes_context and protocol.with_memory is not None and context != "full":
        raise RealtalkError(
            f"--compat {settings['compat']} takes a memory system as --memory SPEC (its memory prompt), not --context"
            f" {context}: e.g. --memory {context if context in ('bm25', 'dense', 'hybrid') else 'bm25'}"
        )
    if not protocol.takes_context and (context != "full" or (settings.get("memory") and not protocol.with_memory)):
        raise RealtalkError(f"--compat {settings['compat']} lays out the whole chat itself; drop --context/--memory")
    if settings.get("memory") and settings.get("context", "full") != "full":
        raise RealtalkError("--memory replaces --context: give one of them")
    if settings.get("memory"):
        settings["context"] = "memory"
    elif settings.get("memory_options"):
        raise RealtalkError("--memory-option is passed to a --memory; give one")
    if isinstance(settings.get("context_tokens"), int) and settings["context_tokens"] < 1:
        raise RealtalkError(f"--context-tokens {settings['context_tokens']}: expected at least 1")
    if settings.get("errata") is not None:
        settings["errata"] = Path(settings["errata"]).absolute()
    # paths made absolute now: a --memory plug-in that changes the working directory cannot move what is read or
    # written later
    files = [p.absolute() for p in files]
    return files, ProbeOptions(**{**settings, "out": Path(settings["out"]).absolute()}), fail_under


def probe_identity(
    opts: ProbeOptions, endpoint, files: list[Path], protocol: ProbeProtocol, memories: MemoryRunner | None = None
) -> dict:
    """The protocol's answer prompts and parameters; the judge is not part of it: a judge added or changed later
    judges the rows lacking its score. A memory is: its resolved spec, options and version (`--context retrieval`
    may resolve to bm25 or hybrid)."""
    identity = run_identity(opts, endpoint, files, protocol.prompt_hashes(), dict(protocol.answer_params))
    if memories is not None:
        identity["memory"] = memories.identity
        identity["context_tokens_bound"] = CONTEXT_TOKENS_BOUND
        if not opts.force:
            refuse_old_budget(opts.out)
    return identity


# What --context-tokens bounds. Runs recorded before it was in the identity bounded the retrieved context alone.
CONTEXT_TOKENS_BOUND = "whole prompt"


def refuse_old_budget(out: Path) -> None:
    """Exit 2, saying why, for a folder holding a retrieval or memory run made when --context-tokens bounded the
    retrieved context alone: resumed now, its questions would mix two meanings of one number."""
    try:
        recorded = orjson.loads(read_regular(out / RUN_FILE)).get("identity")
    except (OSError, ValueError, AttributeError):
        return  # no run there, or an unreadable one: check_run_identity says so
    if isinstance(recorded, dict) and "memory" in recorded and "context_tokens_bound" not in recorded:
        raise RealtalkError(
            f"{out} holds a run whose --context-tokens {recorded.get('context_tokens')} bounded the retrieved context"
            " alone; it now bounds the whole prompt (instructions + question + context), so that run cannot resume:"
            " use a new --out, or --force to start that folder afresh"
        )


def probe_manifest(opts: ProbeOptions, model: str, files: list[Path], prompts: dict) -> dict:
    judge = resolve_model(opts.judge_model, opts.base_url, opts.api_key_env).label if opts.judge_model else None
    name = (opts.judge_protocol or PROTOCOLS[opts.compat or DEFAULT].judge) if judge else None
    return manifest(opts, files, model=model, judge_model=judge, judge_protocol=name, prompts=prompts)
