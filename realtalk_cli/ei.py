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

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import orjson

from .errors import RealtalkError
from .fileio import read_jsonl, write_atomic
from .metrics import (
    alignment,
    entropy_bits,
    exponential_rate,
    frequency,
    linear_slope,
    mean,
    quadratic_curvature,
    stability,
)
from .model import Chat, Message
from .retrieval import words

SENTIMENTS = ("positive", "neutral", "negative")
NRC_EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")
LLM_EMOTIONS = ("anger", "joy", "optimism", "sadness", "neutral")
BACKENDS = ("lexicon", "llm", "hf")

# Reflective: the speaker talks about their own thoughts or feelings.
_REFLECTIVE = re.compile(
    r"\b(i|i'm|im|i’m|i've|i’ve|i'd|me|my|myself)\b[^.?!]{0,40}\b("
    r"feel|feels|felt|feeling|think|thought|reali[sz]e|realized|realised|believe|wonder|guess|learn|learned|"
    r"learnt|understand|remember|regret|wish|hope|worry|worried|afraid|scared|happy|sad|proud|grateful|"
    r"excited|nervous|anxious|stressed|upset|lonely|tired|love|hate|miss|struggle|struggling"
    r")\b|\bmakes? me\b",
    re.IGNORECASE,
)
# Grounding: a question that follows up on, or asks to clarify, what the partner just said.
_FOLLOW_UP = re.compile(
    r"\b(you mean|how was|how did|how come|what happened|which one|why|really|so you|did you|are you|"
    r"what kind|what about|tell me more)\b",
    re.IGNORECASE,
)


@dataclass
class Annotation:
    chat: str
    dataset: str
    index: int  # position of the message in the chat
    session: int
    dia_id: str
    speaker: str
    sentiment: str | None = None
    emotion: str | None = None
    reflective: bool | None = None
    grounding: bool | None = None
    empathy: float | None = None  # sum of emotional reaction, interpretation, exploration (0-2 each)
    intimacy: float | None = None  # 0 (not intimate) .. 1 (very intimate)
    backend: str = ""


# --- lexicon backend ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise RealtalkError("the lexicon backend needs vaderSentiment: pip install 'realtalk-cli[analysis]'") from None
    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=1)
def _nrc() -> dict[str, list[str]]:
    try:
        path = resources.files("nrclex").joinpath("data/nrc_en.json")
        return json.loads(path.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        raise RealtalkError("the lexicon backend needs NRCLex: pip install 'realtalk-cli[analysis]'") from None


def lexicon_sentiment(text: str) -> str:
    score = _vader().polarity_scores(text)["compound"]
    return "positive" if score >= 0.05 else "negative" if score <= -0.05 else "neutral"


def lexicon_emotion(text: str) -> str:
    lexicon = _nrc()
    counts = dict.fromkeys(NRC_EMOTIONS, 0)
    for w in re.findall(r"[a-z']+", text.lower()):
        for emotion in lexicon.get(w, ()):
            if emotion in counts:
                counts[emotion] += 1
    best = max(NRC_EMOTIONS, key=lambda e: counts[e])  # ties: the first in NRC_EMOTIONS order
    return best if counts[best] else "neutral"


def is_reflective(text: str) -> bool:
    return bool(_REFLECTIVE.search(text))


def is_grounding(text: str, partner_previous: str | None) -> bool:
    if "?" not in text or partner_previous is None:
        return False
    shared = {w for w in words(text) if len(w) > 2} & {w for w in words(partner_previous) if len(w) > 2}
    return bool(shared) or bool(_FOLLOW_UP.search(text))


def _partner_previous(chat: Chat) -> list[str | None]:
    """For each message, the text of the partner's message right before it in the same session."""
    out: list[str | None] = []
    for session in chat.sessions:
        previous: Message | None = None
        for m in session.messages:
            out.append(previous.clean_text if previous is not None and previous.speaker != m.speaker else None)
            previous = m
    return out


def _base(chat: Chat, index: int, m: Message, backend: str) -> Annotation:
    return Annotation(chat.name, chat.dataset, index, m.session, m.dia_id, m.speaker, backend=backend)


LABEL_KEYS = ("sentiment", "emotion", "reflective", "grounding", "empathy", "intimacy")


def lexicon_labels(text: str, partner_previous: str | None) -> dict:
    """The lexicon backend's labels for one message (empathy and intimacy: unavailable)."""
    return {
        "sentiment": lexicon_sentiment(text),
        "emotion": lexicon_emotion(text),
        "reflective": is_reflective(text),
        "grounding": is_grounding(text, partner_previous),
        "empathy": None,
        "intimacy": None,
    }


def _annotate(chat: Chat, i: int, m: Message, backend: str, labels: dict) -> Annotation:
    a = _base(chat, i, m, backend)
    for k in LABEL_KEYS:
        setattr(a, k, labels.get(k))
    return a


def label_lexicon(chat: Chat, todo: set[int]) -> Iterator[Annotation]:
    partner = _partner_previous(chat)
    for i, m in enumerate(chat.messages()):
        if i in todo:
            yield _annotate(chat, i, m, "lexicon", lexicon_labels(m.clean_text, partner[i]))


# --- hf backend --------------------------------------------------------------------------------

HF_MODELS = {
    "sentiment": "cardiffnlp/twitter-roberta-base-sentiment-latest",
    "emotion": "cardiffnlp/twitter-roberta-base-emotion",
    "intimacy": "pedropei/question-intimacy",
}


def _hf_pipeline(task: str, model: str):
    try:
        from transformers import pipeline

        from .hf import quiet_transformers

        quiet_transformers()
    except ImportError:
        raise RealtalkError("the hf backend needs transformers: pip install transformers torch") from None
    try:
        return pipeline(task, model=model, truncation=True)
    except Exception as e:  # offline, missing files, gated model: transformers raises many types
        raise RealtalkError(
            f"the hf backend cannot load model {model!r} ({type(e).__name__}); "
            "it needs the model hub or a local copy in the Hugging Face cache"
        ) from None


def parse_hf_models(values: list[str] | None) -> dict[str, str]:
    """`--hf-model sentiment=PATH` (repeatable): local copies or other hub names for the hf backend."""
    models = {}
    for value in values or []:
        kind, sep, model = value.partition("=")
        if not sep or kind not in HF_MODELS or not model:
            raise RealtalkError(f"--hf-model {value!r}: expected KIND=MODEL with KIND one of {', '.join(HF_MODELS)}")
        models[kind] = model
    return models


class HFLabeler:
    """The cardiffnlp sentiment and emotion classifiers and the intimacy regressor, loaded once."""

    def __init__(self, models: dict[str, str] | None = None, batch_size: int = 32):
        self.models = {**HF_MODELS, **(models or {})}
        self.batch_size = batch_size
        self.sentiment = _hf_pipeline("text-classification", self.models["sentiment"])
        self.emotion = _hf_pipeline("text-classification", self.models["emotion"])
        self.intimacy = _hf_pipeline("text-classification", self.models["intimacy"])

    def label(self, texts: list[str], partners: list[str | None]) -> list[dict]:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            kw = {"batch_size": self.batch_size}
            sent, emo = self.sentiment(batch, **kw), self.emotion(batch, **kw)
            inti = self.intimacy(batch, function_to_apply="none", **kw)
            for k, (text, s, e, t) in enumerate(zip(batch, sent, emo, inti, strict=True)):
                out.append(
                    {
                        "sentiment": s["label"].lower(),
                        "emotion": e["label"].lower(),
                        "reflective": is_reflective(text),
                        "grounding": is_grounding(text, partners[start + k]),
                        "empathy": None,
                        "intimacy": min(1.0, max(0.0, (float(t["score"]) + 1) / 2)),  # the regressor's -1..1 to 0..1
                    }
                )
        return out


def label_hf(chat: Chat, todo: set[int], labeler: HFLabeler) -> Iterator[Annotation]:
    partner = _partner_previous(chat)
    messages = [(i, m) for i, m in enumerate(chat.messages()) if i in todo]
    labels = labeler.label([m.clean_text for _, m in messages], [partner[i] for i, _ in messages])
    for (i, m), lab in zip(messages, labels, strict=True):
        yield _annotate(chat, i, m, "hf", lab)


# --- llm backend -------------------------------------------------------------------------------

LABEL_SPEC = (
    '"sentiment": one of positive, neutral, negative; '
    f'"emotion": one of {", ".join(LLM_EMOTIONS)}; '
    '"reflective": true if the speaker reflects on their own thoughts or feelings; '
    '"grounding": true if the message clarifies or follows up on what the partner said; '
    '"empathy": {"emotional_reaction": 0-2, "interpretation": 0-2, "exploration": 0-2} '
    "(how the message responds to the partner's feelings; all 0 if it does not respond to them); "
    '"intimacy": 1 (not intimate) to 5 (very intimate)'
)


def _session_text(chat: Chat, session_number: int, start_index: int, mark: int | None = None) -> str:
    session = next(s for s in chat.sessions if s.number == session_number)
    lines = []
    for offset, m in enumerate(session.messages):
        i = start_index + offset
        prefix = ">>> " if i == mark else ""
        lines.append(f"{prefix}[{i}] {m.speaker}: {m.clean_text}")
    return f"Session {session_number} ({session.date_time}):\n" + "\n".join(lines)


def message_prompt(chat: Chat, index: int, session_number: int, start: int) -> str:
    return (
        "Here is one session of a chat between two people.\n\n"
        + _session_text(chat, session_number, start, mark=index)
        + f"\n\nLabel the message marked >>> (number {index}). Reply with JSON only, with the keys: {LABEL_SPEC}."
    )


def session_prompt(chat: Chat, session_number: int, start: int) -> str:
    return (
        "Here is one session of a chat between two people.\n\n"
        + _session_text(chat, session_number, start)
        + "\n\nLabel every message. Reply with JSON only: a list with one object per message, with the key "
        f'"i" (the message number) and the keys: {LABEL_SPEC}.'
    )


def text_prompt(context: str, speaker: str, text: str) -> str:
    """Labels for one message given the conversation before it (used to label generated messages)."""
    return (
        "Here is a chat between two people.\n\n"
        + context
        + f"\n>>> {speaker}: {text}\n\nLabel the message marked >>>. Reply with JSON only, with the keys: {LABEL_SPEC}."
    )


def labels_from_reply(reply: str) -> dict:
    parsed = _loads_lenient(reply)
    return _labels_dict(parsed if isinstance(parsed, dict) else {})


def _loads_lenient(text: str):
    text = re.sub(r"^```(?:json)?|```$", "", text.strip(), flags=re.M).strip()
    match = re.search(r"[\[{].*[\]}]", text, re.S)
    if not match:
        return None
    blob = re.sub(r",\s*([}\]])", r"\1", match.group(0))
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        return None


def _labels_dict(labels: dict) -> dict:
    """An LLM's JSON labels, checked: anything off the allowed values becomes None."""
    sentiment = str(labels.get("sentiment", "")).lower()
    emotion = str(labels.get("emotion", "")).lower()
    out = {
        "sentiment": sentiment if sentiment in SENTIMENTS else None,
        "emotion": emotion if emotion in LLM_EMOTIONS else None,
        "reflective": labels.get("reflective") if isinstance(labels.get("reflective"), bool) else None,
        "grounding": labels.get("grounding") if isinstance(labels.get("grounding"), bool) else None,
        "empathy": None,
        "intimacy": None,
    }
    empathy = labels.get("empathy")
    if isinstance(empathy, dict):
        parts = [empathy.get(k) for k in ("emotional_reaction", "interpretation", "exploration")]
        if all(isinstance(p, (int, float)) and 0 <= p <= 2 for p in parts):
            out["empathy"] = float(sum(parts))
    intimacy = labels.get("intimacy")
    if isinstance(intimacy, (int, float)) and 1 <= intimacy <= 5:
        out["intimacy"] = (float(intimacy) - 1) / 4
    return out


def llm_jobs(chat: Chat, todo: set[int], per: str) -> list[tuple[list[tuple[int, Message]], str]]:
    """(messages labelled by the call, prompt) for every call the llm backend makes."""
    jobs = []
    index = 0
    for session in chat.sessions:
        start = index
        members = [(start + k, m) for k, m in enumerate(session.messages) if start + k in todo]
        index += len(session.messages)
        if not members:
            continue
        if per == "session":
            jobs.append((members, session_prompt(chat, session.number, start)))
        else:
            jobs.extend(([(i, m)], message_prompt(chat, i, session.number, start)) for i, m in members)
    return jobs


def label_llm(pending: list[tuple[Chat, set[int]]], client, per: str, sink) -> None:
    """Label every pending message with one call per message or per session; write each as it arrives."""
    from .llm import run_jobs

    calls = []
    for chat, todo in pending:
        calls.extend((chat, members, prompt) for members, prompt in llm_jobs(chat, todo, per))

    def done(tag: tuple[Chat, list[tuple[int, Message]]], completion) -> None:
        chat, members = tag
        parsed = _loads_lenient(completion.text) if completion.error is None else None
        by_index: dict[int, dict] = {}
        if per == "session" and isinstance(parsed, list):
            by_index = {int(x["i"]): x for x in parsed if isinstance(x, dict) and str(x.get("i", "")).isdigit()}
        elif isinstance(parsed, dict):
            by_index = {members[0][0]: parsed}
        for i, m in members:
            if completion.error is not None:
                continue  # not written: the next run asks again
            sink(_annotate(chat, i, m, f"llm:{client.endpoint.label}", _labels_dict(by_index.get(i, {}))))

    longest = max((len(members) for _, members, _ in calls), default=1)
    max_tokens = 150 if per == "message" else 50 + 60 * longest  # room for one JSON object per message
    jobs = [((chat, members), [{"role": "user", "content": p}]) for chat, members, p in calls]
    run_jobs(client, jobs, done, max_tokens=max_tokens)


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
) -> dict:
    if backend not in BACKENDS:
        raise RealtalkError(f"--backend {backend!r}: choose {', '.join(BACKENDS)}")
    if backend == "llm" and not model:
        raise RealtalkError("--backend llm needs --model")
    if per not in ("message", "session"):
        raise RealtalkError(f"--per {per!r}: choose message or session")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "annotations.jsonl"
    existing = read_jsonl(path)
    done = {(r["chat"], r["index"]) for r in existing}
    client = totals = None
    if backend == "llm":
        from .cache import ResponseCache, default_cache_path
        from .llm import LLMClient, Prices, resolve_model

        cache = ResponseCache(default_cache_path()) if use_cache else None
        client = LLMClient(resolve_model(model), concurrency=concurrency, cache=cache, prices=Prices.load())
    hf_labeler = HFLabeler(hf_models) if backend == "hf" else None
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
        if backend == "llm":
            label_llm(pending, client, per, sink)
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
        }
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False))
    return metrics
