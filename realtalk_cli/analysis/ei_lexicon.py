"""EI labels offline: VADER sentiment, NRC lexicon emotion, rule-based reflective and grounding.

Empathy and intimacy have no packaged method: they are reported as unavailable (null), not invented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources

from realtalk_cli.analysis.ei_annotation import Annotation, annotate, partner_previous
from realtalk_cli.data.model import Chat
from realtalk_cli.data.text import words
from realtalk_cli.errors import RealtalkError

SENTIMENTS = ("positive", "neutral", "negative")
NRC_EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")


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


def label_lexicon(chat: Chat, todo: set[int]) -> Iterator[Annotation]:
    partner = partner_previous(chat)
    for i, m in enumerate(chat.messages()):
        if i in todo:
            yield annotate(chat, i, m, "lexicon", lexicon_labels(m.clean_text, partner[i]))
