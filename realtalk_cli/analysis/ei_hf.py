"""EI labels from the paper's Hugging Face classifiers (cardiffnlp sentiment and emotion, an intimacy regressor)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from realtalk_cli.analysis.ei_annotation import Annotation, annotate, partner_previous
from realtalk_cli.analysis.ei_lexicon import is_grounding, is_reflective
from realtalk_cli.data.model import Chat
from realtalk_cli.errors import RealtalkError

HF_EMOTIONS = ("anger", "joy", "optimism", "sadness")  # cardiffnlp/twitter-roberta-base-emotion
HF_MODELS = {
    "sentiment": "cardiffnlp/twitter-roberta-base-sentiment-latest",
    "emotion": "cardiffnlp/twitter-roberta-base-emotion",
    "intimacy": "pedropei/question-intimacy",
}


def _hf_pipeline(task: str, model: str, backend: str = "hf", truncation: bool = True):
    from realtalk_cli.analysis.hf import local_only_without_a_hub, quiet_transformers

    if not Path(model).exists():
        local_only_without_a_hub()
    try:
        from transformers import pipeline

        quiet_transformers()
    except ImportError:
        raise RealtalkError(f"the {backend} backend needs transformers: pip install transformers torch") from None
    try:
        return pipeline(task, model=model, truncation=truncation)
    except Exception as e:  # offline, missing files, gated model: transformers raises many types
        raise RealtalkError(
            f"the {backend} backend cannot load model {model!r} ({type(e).__name__}); "
            "it needs the model hub or a local copy in the Hugging Face cache (--hf-model KIND=PATH)"
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
    partner = partner_previous(chat)
    messages = [(i, m) for i, m in enumerate(chat.messages()) if i in todo]
    labels = labeler.label([m.clean_text for _, m in messages], [partner[i] for i, _ in messages])
    for (i, m), lab in zip(messages, labels, strict=True):
        yield annotate(chat, i, m, "hf", lab)
