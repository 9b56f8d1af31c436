"""Answer scores, matching the paper's evaluation code (LoCoMo's `task_eval/evaluation.py`).

Normalisation: commas removed, lower-case, punctuation removed, the words a/an/the/and removed,
whitespace collapsed; tokens Porter-stemmed (NLTK's stemmer, ported in porter.py: same stems, no
NLTK import). Category 1 (multi-hop) answers are split on
commas and matched part by part; category 3 golds lose the rationale after ';'. LoCoMo category 5
(adversarial) scores 1 when the prediction says the information is not available. LongMemEval
questions (numbered by type, not by LoCoMo's categories) take the plain token F1.
`date_normalised_f1` is the same score after dates are written one way (see `dates.py`); not the paper's.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache

from realtalk_cli.scoring import porter
from realtalk_cli.scoring.dates import normalise_dates

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the|and)\b")


stem = lru_cache(maxsize=65536)(porter.stem)


def normalize_answer(text: str) -> str:
    text = text.replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return [stem(w) for w in normalize_answer(text).split()]


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = _tokens(prediction), _tokens(gold)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def multi_answer_f1(prediction: str, gold: str) -> float:
    """Mean over gold parts of the best F1 against any predicted part (parts split on commas)."""
    predictions = [p.strip() for p in prediction.split(",")]
    golds = [g.strip() for g in gold.split(",")]
    return sum(max(token_f1(p, g) for p in predictions) for g in golds) / len(golds)


def adversarial_score(prediction: str) -> float:
    lowered = prediction.lower()
    return 1.0 if "no information available" in lowered or "not mentioned" in lowered else 0.0


def answer_f1(prediction: str, gold: str, category: int, dataset: str) -> float:
    """The paper's per-category answer score."""
    if dataset == "longmemeval":  # its type numbers are not LoCoMo's categories: no per-category rule applies
        return token_f1(prediction, gold)
    if dataset == "locomo" and category == 5:
        return adversarial_score(prediction)
    if category == 3:
        gold = gold.split(";")[0].strip()
    if category == 1:
        return multi_answer_f1(prediction, gold)
    return token_f1(prediction, gold)


def _rouge_tokens(text: str) -> list[str]:
    # rouge-score's default tokenizer: lower-case, anything but [a-z0-9] separates tokens, no stemming.
    return re.findall(r"[a-z0-9]+", text.lower())


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: longest common subsequence of tokens over prediction (precision) and reference (recall)."""
    pred, ref = _rouge_tokens(prediction), _rouge_tokens(reference)
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def date_normalised_f1(prediction: str, gold: str, category: int, dataset: str) -> float:
    """`answer_f1` after writing every date in both texts one canonical way (`29 december 2023`)."""
    return answer_f1(normalise_dates(prediction), normalise_dates(gold), category, dataset)
