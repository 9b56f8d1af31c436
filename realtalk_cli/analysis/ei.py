"""The paper's emotional-intelligence (EI) analysis: label every message, then aggregate per speaker.

Backends label messages; `speaker_metrics` turns labels into the paper's metrics with the pure
functions of `metrics.py`. Annotations are appended to `annotations.jsonl` one line per message, so a
run can be resumed; `metrics.json` is rewritten at the end.

- lexicon: offline, no key. Sentiment from VADER (compound >= 0.05 positive, <= -0.05 negative), emotion
  from the NRC emotion lexicon shipped with NRCLex (the most frequent of its 8 emotions among the
  message's words, `neutral` when none), reflective and grounding from the rules below. Empathy and
  intimacy have no packaged method: they are reported as unavailable (null), not invented.
- llm: any chat model through the LLM client, one call per message with its session as context, or
  one call per session (`per="session"`).
- hf: the paper's cardiffnlp classifiers through transformers (sentiment, emotion) and an intimacy
  regressor, batched; needs the models locally or a model hub.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson

from realtalk_cli.analysis.ei_annotation import BACKENDS, Annotation
from realtalk_cli.analysis.ei_hf import HFLabeler, label_hf
from realtalk_cli.analysis.ei_lexicon import label_lexicon
from realtalk_cli.analysis.ei_llm import LABEL_SPEC, label_llm, label_llm_batch, llm_requests
from realtalk_cli.analysis.metrics import (
    alignment,
    entropy_bits,
    exponential_rate,
    frequency,
    linear_slope,
    mean,
    quadratic_curvature,
    stability,
)
from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import check_run_identity, read_jsonl, run_folder, write_atomic

# --- aggregation -------------------------------------------------------------------------------


def speaker_metrics(rows: list[dict], speaker: str) -> dict:
    """The paper's EI metrics for one speaker of one chat, from that chat's annotations."""
    mine = [r for r in rows if r["speaker"] == speaker]
    sessions = sorted({r["session"] for r in rows})
    by_session = {s: [r for r in rows if r["session"] == s] for s in sessions}
    intimacy_series = [
        v
        for s in sessions
        if (v := mean([r["intimacy"] for r in by_session[s] if r["speaker"] == speaker])) is not None
    ]
    return {
        "messages": len(mine),
        "reflective_frequency": frequency([r["reflective"] for r in mine]),
        "emotion_diversity": entropy_bits([r["emotion"] for r in mine if r["emotion"]]),
        "sentiment_diversity": entropy_bits([r["sentiment"] for r in mine if r["sentiment"]]),
        "grounding_frequency": frequency([r["grounding"] for r in mine]),
        "empathy": mean([r["empathy"] for r in mine]),
        "intimacy": mean(intimacy_series),
        "intimacy_slope": linear_slope(intimacy_series),
        "intimacy_exp_rate": exponential_rate(intimacy_series),
        "intimacy_curvature": quadratic_curvature(intimacy_series),
        "sentiment_stability": stability(
            [[r["sentiment"] for r in by_session[s] if r["speaker"] == speaker] for s in sessions]
        ),
        "emotion_consistency": stability(
            [[r["emotion"] for r in by_session[s] if r["speaker"] == speaker] for s in sessions]
        ),
        "sentiment_alignment": alignment(
            [[(r["speaker"], r["sentiment"]) for r in by_session[s]] for s in sessions], speaker
        ),
        "emotion_alignment": alignment(
            [[(r["speaker"], r["emotion"]) for r in by_session[s]] for s in sessions], speaker
        ),
    }


METRIC_NAMES = (
    "reflective_frequency",
    "emotion_diversity",
    "sentiment_diversity",
    "grounding_frequency",
    "empathy",
    "intimacy",
    "intimacy_slope",
    "intimacy_exp_rate",
    "intimacy_curvature",
    "sentiment_stability",
    "emotion_consistency",
    "sentiment_alignment",
    "emotion_alignment",
)


# --- the run -----------------------------------------------------------------------------------


def run_ei(
    chats: list[Chat],
    out: Path,
    backend: str,
    model: str | None = None,
    per: str = "message",
    concurrency: int = 8,
    progress=None,
    use_cache: bool = True,
    hf_models: dict[str, str] | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    max_cost: float | None = None,
    dry_run: bool = False,
    timeout: float = 120.0,
    force: bool = False,
    batch: bool = False,
) -> dict:
    """Label every message (resuming annotations.jsonl in `out`) and compute the metrics per speaker.

    `out` holds one labelling (same backend, model, prompt and chats); another exits 2 unless `force`.
    A reply without readable labels is not written: the next run asks again.
    With `dry_run` (llm backend) nothing is called or written: the plan of requests, tokens and cost is returned.
    With `batch` (llm backend) the calls go as a batch job; while it runs the result is `{"pending": message}`.
    """
    if batch and backend != "llm":
        raise RealtalkError("--batch sends LLM requests as a batch job: use it with --backend llm")
    if backend not in BACKENDS:
        raise RealtalkError(f"--backend {backend!r}: choose {', '.join(BACKENDS)}")
    if backend == "llm" and not model:
        raise RealtalkError("--backend llm needs --model")
    if per not in ("message", "session"):
        raise RealtalkError(f"--per {per!r}: choose message or session")
    if dry_run and backend != "llm":
        raise RealtalkError("--dry-run counts LLM requests: use it with --backend llm")
    if max_cost is not None and backend != "llm":
        raise RealtalkError("--max-cost limits LLM spending: use it with --backend llm")
    path = out / "annotations.jsonl"
    existing = read_jsonl(path)
    done = {(r["chat"], r["index"]) for r in existing}
    client = endpoint = None
    if backend == "llm":
        from realtalk_cli.llm.cache import open_cache
        from realtalk_cli.llm.client import LLMClient, dry_run_plan
        from realtalk_cli.llm.providers import Prices, resolve_model

        endpoint = resolve_model(model, base_url, api_key_env)
        prices = Prices.load()
        if max_cost is not None and not endpoint.offline and not prices.known(endpoint.model):
            raise RealtalkError(f"no price for {endpoint.label}; add it to prices.toml")
        if dry_run:
            if out.is_dir():
                check_run_identity(out, ei_identity(chats, backend, endpoint, per, hf_models), EI_FILES)
            pending = [(c, {i for i in range(sum(1 for _ in c.messages())) if (c.name, i) not in done}) for c in chats]
            calls, max_tokens = llm_requests(pending, per)
            requests = [[{"role": "user", "content": p}] for _, _, p in calls]
            return dry_run_plan(endpoint, Prices.load(), requests, len(done), "request", max_tokens, batch=batch)
        client = LLMClient(
            endpoint, concurrency=concurrency, cache=open_cache(use_cache), prices=prices, timeout_s=timeout
        )
    hf_labeler = HFLabeler(hf_models) if backend == "hf" else None
    with run_folder(out, ei_identity(chats, backend, endpoint, per, hf_models), EI_FILES, force):
        return _label_and_measure(chats, out, backend, per, client, hf_labeler, progress, max_cost, batch)


EI_FILES = ["annotations.jsonl", "metrics.json"]


def ei_identity(chats: list[Chat], backend: str, endpoint, per: str, hf_models: dict | None) -> dict:
    """What changes the labels: backend, model and endpoint, prompt, hf models, and the chats' messages."""
    llm = endpoint is not None
    return {
        "backend": backend,
        "model": endpoint.label if llm else None,
        "endpoint": (endpoint.base_url or None) if llm else None,
        "per": per if llm else None,
        "prompt": hashlib.sha256(LABEL_SPEC.encode()).hexdigest()[:12] if llm else None,
        "hf_models": hf_models or None,
        "chats": {c.name: _chat_hash(c) for c in chats},
    }


def _chat_hash(chat: Chat) -> str:
    text = "".join(f"{m.speaker}\t{m.clean_text}\n" for m in chat.messages())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _label_and_measure(chats, out: Path, backend, per, client, hf_labeler, progress, max_cost, batch=False) -> dict:
    path = out / "annotations.jsonl"
    done = {(r["chat"], r["index"]) for r in read_jsonl(path)}
    totals = None
    stopped = False
    with open(path, "ab") as f:

        def sink(a: Annotation) -> None:
            f.write(orjson.dumps(a.__dict__) + b"\n")
            f.flush()
            if progress:
                progress(a)

        pending = []
        for chat in chats:
            todo = {i for i in range(sum(1 for _ in chat.messages())) if (chat.name, i) not in done}
            if todo:
                pending.append((chat, todo))
        if progress and hasattr(progress, "start"):
            progress.start(sum(len(todo) for _, todo in pending), len(done), "labelled")
        if backend == "llm" and batch:
            from realtalk_cli.llm.batch import BatchFolder

            waiting = label_llm_batch(pending, client, per, sink, BatchFolder(out), max_cost)
            if client.cache is not None:
                client.cache.close()  # writes what the batch answered
            if waiting:
                return {"complete": False, "pending": waiting}
        elif backend == "llm":
            stopped = label_llm(pending, client, per, sink, max_cost)
        for chat, todo in pending if backend != "llm" else []:
            labelled = label_lexicon(chat, todo) if backend == "lexicon" else label_hf(chat, todo, hf_labeler)
            for a in labelled:
                sink(a)
    if client is not None:
        totals = client.totals
    rows = read_jsonl(path)
    metrics = {
        "backend": backend if backend != "llm" else f"llm:{client.endpoint.label} per {per}",
        "unavailable": ["empathy", "intimacy"] if backend == "lexicon" else ["empathy"] if backend == "hf" else [],
        "chats": {},
    }
    if hf_labeler is not None:
        metrics["hf_models"] = hf_labeler.models
    for chat in chats:
        chat_rows = [r for r in rows if r["chat"] == chat.name]
        metrics["chats"][chat.name] = {
            "dataset": chat.dataset,
            "speakers": {sp: speaker_metrics(chat_rows, sp) for sp in chat.speakers},
        }
    if totals is not None:
        metrics["usage"] = {
            "requests": totals.requests,
            "cached": totals.cached,
            "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens,
            "cost_usd": round(totals.cost_usd, 6),
            "stopped_for_max_cost": stopped,
        }
    wanted = sum(sum(1 for _ in c.messages()) for c in chats)
    failed = wanted - len({(r["chat"], r["index"]) for r in rows if r["chat"] in metrics["chats"]})
    reasons = [f"{failed} messages without labels (failed or unreadable replies)"] if failed else []
    reasons += ["stopped at --max-cost"] if stopped else []
    metrics["complete"] = not reasons
    metrics["incomplete"] = {"reason": "; ".join(reasons), "failed": failed} if reasons else None
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False))
    return metrics
