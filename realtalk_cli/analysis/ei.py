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
import math
from pathlib import Path

import orjson

from realtalk_cli.analysis.ei_annotation import BACKENDS, Annotation
from realtalk_cli.analysis.ei_hf import HF_EMOTIONS, HFLabeler, label_hf
from realtalk_cli.analysis.ei_lexicon import NRC_EMOTIONS, label_lexicon
from realtalk_cli.analysis.ei_llm import LABEL_SPEC, LLM_EMOTIONS, label_llm, label_llm_batch, llm_requests
from realtalk_cli.analysis.ei_paper import DEFAULT_MODEL as PAPER_DEFAULT_MODEL
from realtalk_cli.analysis.ei_paper import PAPER_EMOTIONS, PaperClassifiers, label_paper
from realtalk_cli.analysis.ei_paper import prompt_hashes as paper_prompt_hashes
from realtalk_cli.analysis.metrics import (
    alignment,
    entropy_bits,
    exponential_rate,
    frequency,
    linear_slope,
    mean,
    quadratic_curvature,
    quadratic_linear_coefficient,
    stability,
)
from realtalk_cli.data.model import Chat
from realtalk_cli.data.text import plural
from realtalk_cli.errors import RealtalkError
from realtalk_cli.fileio import check_run_identity, mark_unfinished, read_jsonl, run_folder, write_atomic
from realtalk_cli.llm.spending import USAGE_FILE, Spending, halting

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
        "intimacy_linear_coefficient": quadratic_linear_coefficient(intimacy_series),
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
    "intimacy_linear_coefficient",
    "sentiment_stability",
    "emotion_consistency",
    "sentiment_alignment",
    "emotion_alignment",
)


# --- the run -----------------------------------------------------------------------------------

EI_BACKENDS = (*BACKENDS, "paper")
EMOTION_LABELS = {
    "lexicon": (*NRC_EMOTIONS, "neutral"),
    "llm": LLM_EMOTIONS,
    "hf": HF_EMOTIONS,
    "paper": PAPER_EMOTIONS,
}


def emotion_label_note(backend: str) -> dict:
    """Which emotion labels a backend gives, the entropy they allow, and the warning every report carries."""
    labels = EMOTION_LABELS[backend]
    top = math.log2(len(labels))
    return {
        "emotion_labels": list(labels),
        "emotion_entropy_max_bits": round(top, 2),
        "warning": (
            f"labels by the {backend} backend: {len(labels)} emotion labels, entropy at most {top:.2f} bits "
            f"(the paper's 11 labels: {math.log2(11):.2f}); label-based metrics are comparable only between "
            "runs of the same backend"
        ),
    }


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
    unit: str = "messages",
) -> dict:
    """Label every message (resuming annotations.jsonl in `out`) and compute the metrics per speaker.

    `out` holds one labelling (same backend, model, prompt and chats); another exits 2 unless `force`.
    A reply without readable labels is not written: the next run asks again.
    With `dry_run` (llm backend) nothing is called or written: the plan of requests, tokens and cost is returned.
    With `batch` (llm backend) the calls go as a batch job; while it runs the result is `{"pending": message}`.
    """
    if batch and backend != "llm":
        raise RealtalkError("--batch sends LLM requests as a batch job: use it with --backend llm")
    if backend not in EI_BACKENDS:
        raise RealtalkError(f"--backend {backend!r}: choose {', '.join(EI_BACKENDS)}")
    if backend == "llm" and not model:
        raise RealtalkError("--backend llm needs --model")
    if per not in ("message", "session"):
        raise RealtalkError(f"--per {per!r}: choose message or session")
    if dry_run and backend != "llm":
        raise RealtalkError("--dry-run counts LLM requests: use it with --backend llm")
    if max_cost is not None and backend != "llm":
        raise RealtalkError("--max-cost limits LLM spending: use it with --backend llm")
    if unit not in ("messages", "turns"):
        raise RealtalkError(f"--unit {unit!r}: choose messages or turns")
    if unit == "turns":
        chats = [chat.merged_turns() for chat in chats]
    path = out / "annotations.jsonl"
    existing = read_jsonl(path)
    done = {(r["chat"], r["index"]) for r in existing}
    client = endpoint = empathy_client = None
    paper_classifiers = PaperClassifiers(hf_models) if backend == "paper" else None  # first: fails fast offline
    if backend in ("llm", "paper"):
        from realtalk_cli.llm.cache import open_cache
        from realtalk_cli.llm.client import LLMClient
        from realtalk_cli.llm.jobs import dry_run_plan
        from realtalk_cli.llm.providers import Prices, resolve_model

        endpoint = resolve_model(model or PAPER_DEFAULT_MODEL, base_url, api_key_env)
        prices = Prices.load()
        if max_cost is not None and not endpoint.offline and not prices.known(endpoint.model):
            raise RealtalkError(f"no price for {endpoint.label}; add it to prices.toml")
        if dry_run:
            if out.is_dir():
                check_run_identity(out, ei_identity(chats, backend, endpoint, per, hf_models, unit), EI_FILES)
            pending = [(c, {i for i in range(sum(1 for _ in c.messages())) if (c.name, i) not in done}) for c in chats]
            calls, max_tokens = llm_requests(pending, per)
            requests = [[{"role": "user", "content": p}] for _, _, p in calls]
            return dry_run_plan(endpoint, Prices.load(), requests, len(done), "request", max_tokens, batch=batch)
        client = LLMClient(
            endpoint, concurrency=concurrency, cache=open_cache(use_cache), prices=prices, timeout_s=timeout
        )
        if backend == "paper":  # empathy is re-asked on invalid JSON: a cached reply would only repeat itself
            empathy_client = LLMClient(endpoint, concurrency=concurrency, prices=prices, timeout_s=timeout)
    labellers = {"hf": HFLabeler(hf_models) if backend == "hf" else None, "paper": paper_classifiers}
    with run_folder(out, ei_identity(chats, backend, endpoint, per, hf_models, unit), EI_FILES, force):
        spending = Spending(out).start()
        mark_unfinished(out, "metrics.json", None)
        try:
            for c in (client, empathy_client):
                spending.attach(c, "labels")
            clients = (client, empathy_client)
            return _label_and_measure(
                chats, out, backend, per, unit, clients, labellers, progress, max_cost, batch, spending
            )
        finally:
            spending.finish()


EI_FILES = ["annotations.jsonl", "metrics.json", USAGE_FILE]


def ei_identity(
    chats: list[Chat], backend: str, endpoint, per: str, hf_models: dict | None, unit: str = "messages"
) -> dict:
    """What changes the labels: backend, model and endpoint, prompt, hf models, unit, and the chats' messages."""
    llm = endpoint is not None
    prompt = hashlib.sha256(LABEL_SPEC.encode()).hexdigest()[:12] if backend == "llm" else None
    identity = {
        "backend": backend,
        "model": endpoint.label if llm else None,
        "endpoint": (endpoint.base_url or None) if llm else None,
        "per": per if backend == "llm" else None,
        "prompt": paper_prompt_hashes() if backend == "paper" else prompt,
        "hf_models": hf_models or None,
        "chats": {c.name: _chat_hash(c) for c in chats},
    }
    if unit != "messages":  # absent for messages, so that earlier runs keep their identity
        identity["unit"] = unit
    return identity


def _chat_hash(chat: Chat) -> str:
    text = "".join(f"{m.speaker}\t{m.clean_text}\n" for m in chat.messages())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _label_and_measure(
    chats, out: Path, backend, per, unit, clients, labellers, progress, max_cost, batch, spending: Spending
) -> dict:
    client, empathy_client = clients
    hf_labeler = labellers["hf"]
    path = out / "annotations.jsonl"
    done = {(r["chat"], r["index"]) for r in read_jsonl(path)}
    totals = None
    stopped = False
    with open(path, "ab") as f:

        def sink(a: Annotation) -> None:
            a.unit = unit
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

            waiting, stopped = label_llm_batch(pending, client, per, sink, BatchFolder(out), max_cost, spending)
            if client.cache is not None:
                client.cache.close()  # writes what the batch answered
            if waiting:
                return {"complete": False, "pending": waiting}
        elif backend == "llm":
            stopped = label_llm(pending, client, per, sink, halting(spending, max_cost, lambda: [client]))
        elif backend == "paper":
            label_paper(pending, labellers["paper"], client, empathy_client, sink)
        for chat, todo in pending if backend in ("lexicon", "hf") else []:
            labelled = label_lexicon(chat, todo) if backend == "lexicon" else label_hf(chat, todo, hf_labeler)
            for a in labelled:
                sink(a)
    if client is not None:
        totals = client.totals
    rows = read_jsonl(path)
    label = backend
    if backend == "llm":
        label = f"llm:{client.endpoint.label} per {per}"
    elif backend == "paper":
        label = f"paper (llm labels: {client.endpoint.label})"
    metrics = {
        "backend": label,
        "unit": unit,
        **emotion_label_note(backend),
        "unavailable": ["empathy", "intimacy"] if backend == "lexicon" else ["empathy"] if backend == "hf" else [],
        "chats": {},
    }
    if hf_labeler is not None:
        metrics["hf_models"] = hf_labeler.models
    if labellers["paper"] is not None:
        metrics["hf_models"] = labellers["paper"].models
        metrics["paper"] = {
            "prompts": paper_prompt_hashes(),
            "intimacy_scale": "raw regressor output (function_to_apply='none'); the paper's is not determinable",
            "classifier_fallbacks": sum(r.get("fallbacks", 0) for r in rows),
        }
    for chat in chats:
        chat_rows = [r for r in rows if r["chat"] == chat.name]
        metrics["chats"][chat.name] = {
            "dataset": chat.dataset,
            "speakers": {sp: speaker_metrics(chat_rows, sp) for sp in chat.speakers},
        }
    if totals is not None:
        both = [totals, *([empathy_client.totals] if empathy_client is not None else [])]
        metrics["usage"] = {
            "requests": sum(t.requests for t in both),
            "cached": sum(t.cached for t in both),
            "prompt_tokens": sum(t.prompt_tokens for t in both),
            "completion_tokens": sum(t.completion_tokens for t in both),
            "cost_usd": round(sum(t.cost_usd for t in both), 6),
            "stopped_for_max_cost": stopped,
        }
        metrics["spending"] = spending.summary()  # this invocation and the whole folder (usage.jsonl)
    wanted = sum(sum(1 for _ in c.messages()) for c in chats)
    failed = wanted - len({(r["chat"], r["index"]) for r in rows if r["chat"] in metrics["chats"]})
    reasons = [f"{plural(failed, 'message')} without labels (failed or unreadable replies)"] if failed else []
    reasons += ["stopped at --max-cost"] if stopped else []
    metrics["complete"] = not reasons
    metrics["incomplete"] = {"reason": "; ".join(reasons), "failed": failed} if reasons else None
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False))
    return metrics
